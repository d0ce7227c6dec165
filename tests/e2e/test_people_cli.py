"""`whistle users ...`, `whistle devices credentials` and `whistle registry import --mode replace` as an operator
runs them: accounts and tokens from the command line (the change recorded as the OS user), broker files and the
once-only CSV of new passwords, and an import that retires what the file no longer lists."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import psycopg

from tests.e2e.test_cli import whistle
from tests.helpers import small_registry
from whistle.broker_auth import verify_mosquitto_hash


def test_users_add_token_password_and_revoke(tmp_path: Path, db_url: str) -> None:
    env = {"WHISTLE_DATABASE_URL": db_url}
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps(small_registry()))
    assert whistle("registry", "import", str(reg), env=env).returncode == 0
    added = whistle("users", "add", "SCR-1", "--role", "screen", "--name", "大屏", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"id": "SCR-1", "role": "screen", "grid_id": None}
    scoped = whistle("users", "add", "OPS-G1", "--role", "ops_center", "--grid", "RJ-G1", env=env)
    assert json.loads(scoped.stdout)["grid_id"] == "RJ-G1"
    refused = whistle("users", "add", "W-17", "--role", "screen", env=env)
    assert refused.returncode == 2 and "exists already" in refused.stderr
    token = whistle("users", "token", "W-17", "--label", "phone", env=env)  # a registry worker: no creation
    assert token.returncode == 0 and token.stdout.strip().startswith("dw_") and "expires" in token.stderr
    pw = whistle("users", "password", "SCR-1", "--stdin", env=env, input="a fine long screen password\n")
    assert pw.returncode == 0, pw.stderr
    short = whistle("users", "password", "SCR-1", "--stdin", env=env, input="short\n")
    assert short.returncode == 2 and "at least 12" in short.stderr
    listed = [json.loads(line) for line in whistle("users", "list", env=env).stdout.splitlines()]
    by_id = {u["id"]: u for u in listed}
    assert by_id["W-17"]["active_tokens"] == 1 and by_id["SCR-1"]["kind"] == "account"
    revoked = whistle("users", "revoke", "W-17", env=env)
    assert json.loads(revoked.stdout) == {"id": "W-17", "revoked": 1}
    with psycopg.connect(db_url) as conn:
        actors = {r[0] for r in conn.execute("SELECT actor FROM audit_events WHERE action LIKE 'token.%'")}
        assert all(a.startswith("cli") for a in actors), actors
        assert conn.execute("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL").fetchone() == (0,)


def test_device_credentials_are_written_once_and_the_files_follow_the_registry(tmp_path: Path, db_url: str) -> None:
    env = {"WHISTLE_DATABASE_URL": db_url}
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps(small_registry()))
    assert whistle("registry", "import", str(reg), env=env).returncode == 0
    out = tmp_path / "broker"
    first = whistle("devices", "credentials", "--out", str(out), "--gateway", "gw-nbiot=WM-000001", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["issued"] == 7  # five devices, the gateway, the collector
    path = Path(summary["credentials_csv"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with path.open() as f:
        rows = {r["username"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"SM-0001", "SM-0002", "SM-0003", "WM-000001", "EL-0002", "gw-nbiot", "whistle-collector"}
    assert all(r["password"] not in first.stdout for r in rows.values()), "a password was printed"
    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines() if ":" in line)
    assert verify_mosquitto_hash(rows["SM-0001"]["password"], hashes["SM-0001"])
    assert "whistle-collector" in (out / "service.passwd").read_text()
    again = json.loads(whistle("devices", "credentials", "--out", str(out), env=env).stdout)
    assert again["issued"] == 0 and "credentials_csv" not in again  # nothing new: no new passwords
    rotated = json.loads(whistle("devices", "credentials", "--out", str(out), "--rotate", "SM-0001", env=env).stdout)
    assert rotated["issued"] == 1
    # the registry drops a device: an import in mode replace retires it, and the files leave it out
    doc = small_registry()
    doc["devices"] = [d for d in doc["devices"] if d["id"] != "SM-0003"]
    reg.write_text(json.dumps({"devices": doc["devices"]}))
    res = whistle("registry", "import", str(reg), "--mode", "replace", env={**env, "WHISTLE_BROKER_AUTH_DIR": str(out)})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["retired"] == {"devices": ["SM-0003"]}
    assert "SM-0003:" not in (out / "passwd").read_text() and "SM-0001:" in (out / "passwd").read_text()
    assert "SM-0003" not in (out / "acl").read_text()
