"""The `whistle` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

WHISTLE = str(Path(sys.executable).with_name("whistle"))


def whistle(*args: str, env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    return subprocess.run(
        [WHISTLE, *args], env={**base, **env}, capture_output=True, text=True, timeout=120, check=False, input=input
    )


def test_simulated_registry_is_reproducible_and_imports(tmp_path: Path, db_url: str) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert whistle("simulate", "--households", "40", "--seed", "7", "--registry-out", str(a), env={}).returncode == 0
    assert whistle("simulate", "--households", "40", "--seed", "7", "--registry-out", str(b), env={}).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert len(doc["households"]) == 40 and {d["type"] for d in doc["devices"]} >= {"smoke", "water", "power"}

    res = whistle("registry", "import", str(a), env={"WHISTLE_DATABASE_URL": db_url})
    assert res.returncode == 0, res.stderr
    counts = json.loads(res.stdout)
    assert counts["households"] == 40 and counts["devices"] == len(doc["devices"])
    again = whistle("registry", "import", str(a), env={"WHISTLE_DATABASE_URL": db_url})
    assert json.loads(again.stdout) == counts
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM households").fetchone() == (40,)


def test_bad_registry_file_is_a_clear_error(tmp_path: Path, db_url: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": [{"id": "X", "type": "gas", "building_id": "B"}]}')
    res = whistle("registry", "import", str(bad), env={"WHISTLE_DATABASE_URL": db_url})
    assert res.returncode == 2 and "devices.0.type" in res.stderr
    missing = whistle("registry", "import", str(tmp_path / "nope.json"), env={"WHISTLE_DATABASE_URL": db_url})
    assert missing.returncode == 2 and "nope.json" in missing.stderr


def test_an_unreachable_kafka_is_a_clear_error(db_url: str) -> None:
    res = whistle(
        "serve",
        env={
            "WHISTLE_DATABASE_URL": db_url,
            "WHISTLE_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "WHISTLE_MQTT_URL": "mqtt://127.0.0.1:9",
        },
    )
    assert res.returncode == 2 and "cannot reach Kafka at 127.0.0.1:9" in res.stderr


def test_households_run_is_carried_out_by_a_running_service(tmp_path: Path, db_url: str, mosquitto: object) -> None:
    import time
    import urllib.request

    from app.broker import free_port

    port = free_port()
    env = {
        "WHISTLE_DATABASE_URL": db_url,
        "WHISTLE_MQTT_URL": mosquitto.url,  # type: ignore[attr-defined]
        "WHISTLE_HTTP": f"127.0.0.1:{port}",
        "WHISTLE_ADMIN_TOKEN": "cli-test-token-0123456789",
        "WHISTLE_STATE_DIR": str(tmp_path / "state"),
        "WHISTLE_MQTT_CLIENT_ID": f"cli-{port}",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([WHISTLE, "serve"], env={**base, **env}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "whistle serve did not come up"
            time.sleep(0.3)
        res = whistle("households", "run", "--from", "2020-01-01", "--to", "2020-01-02", "--wait", "60", env=env)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["status"] == "done" and out["judged"] == [] and out["detections"] == 0
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT requested_by LIKE 'cli:%' FROM household_job_requests").fetchone() == (True,)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_households_run_without_a_running_service_says_so(db_url: str) -> None:
    res = whistle("households", "run", "--from", "2020-01-01", "--wait", "3", env={"WHISTLE_DATABASE_URL": db_url})
    assert res.returncode == 3 and "is a rules role running" in res.stderr
