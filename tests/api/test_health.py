"""GET /health answers at once when the database is frozen or gone: "degraded", never a 30-second wait."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from alerts.service import AlertService
from api.app import create_app
from api.deps import ApiContext
from tests.conftest import pg_state_dir
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres


@pytest.fixture
def private_pg() -> Iterator[tuple[EmbeddedPostgres, str]]:
    with pg_state_dir("health") as state:
        pg = EmbeddedPostgres(state, database="health")
        url = pg.start()
        yield pg, url
        pg.stop()


def server_processes(pgdata: Path) -> list[psutil.Process]:
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    master = psutil.Process(pid)
    return [master, *master.children(recursive=True)]


@pytest.fixture
async def client(private_pg: tuple[EmbeddedPostgres, str]) -> AsyncIterator[httpx.AsyncClient]:
    _, url = private_pg
    db = Database(url, max_size=2)
    await db.start()
    app = create_app(ApiContext(db=db, alerts=AlertService(db), admin_token="t" * 20, roles=["api"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c
    await db.stop()


async def timed_health(client: httpx.AsyncClient) -> tuple[float, dict[str, object]]:
    t0 = time.monotonic()
    r = await client.get("/api/v1/health")
    return time.monotonic() - t0, r.json()


async def test_health_is_degraded_at_once_while_the_database_is_frozen_and_ok_after(
    client: httpx.AsyncClient, private_pg: tuple[EmbeddedPostgres, str]
) -> None:
    pg, _ = private_pg
    _, ok = await timed_health(client)
    assert ok["status"] == "ok"
    procs = server_processes(pg.pgdata)
    for p in procs:
        with contextlib.suppress(ProcessLookupError):  # a backend may have just ended
            os.kill(p.pid, signal.SIGSTOP)
    try:
        took, frozen = await timed_health(client)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
    assert frozen["status"] == "degraded", frozen
    assert took < 5.0, f"health took {took:.1f} s with the database frozen"  # generous: the answer is ~0.8 s
    await asyncio.sleep(0.2)
    _, back = await timed_health(client)
    assert back["status"] == "ok"


async def test_health_is_degraded_at_once_when_the_database_is_gone(
    client: httpx.AsyncClient, private_pg: tuple[EmbeddedPostgres, str]
) -> None:
    pg, _ = private_pg
    await asyncio.to_thread(pg.stop)
    took, gone = await timed_health(client)
    assert gone["status"] == "degraded" and took < 5.0, (took, gone)
