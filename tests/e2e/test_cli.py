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
