"""The database handle every role shares: an async connection pool with the schema migrated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from whistle.store.migrate import migrate


class Database:
    """A psycopg 3 pool; `start()` migrates the schema first."""

    def __init__(self, conninfo: str, *, max_size: int = 8) -> None:
        self.conninfo = conninfo
        self._pool = AsyncConnectionPool(conninfo, min_size=1, max_size=max_size, open=False)
        self._open = False
        self._ping: asyncio.Future[str] | None = None
        self._ping_started = 0.0

    async def start(self) -> None:
        if self._open:
            return
        await migrate(self.conninfo)
        await self._pool.open(wait=True, timeout=30)
        self._open = True

    async def stop(self) -> None:
        if self._open:
            self._open = False
            await self._pool.close()

    async def __aenter__(self) -> Database:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _ping_once(self) -> str:
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=5)
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return "ok"

    async def ping(self, timeout_s: float = 0.8) -> str:
        """ "ok" when the database answered within `timeout_s`, else "error: <what went wrong>"; never raises.

        The probe is a connection of its own, not one from the pool (a pool drained by waiting work must not
        make a health check wait), and it is never cancelled (cancelling a query to a frozen server blocks on
        the cancel request): a probe that has not answered is left running, and the next call reports on it
        instead of starting another."""
        task = self._ping
        if task is None or task.done():
            task = self._ping = asyncio.ensure_future(self._ping_once())
            self._ping_started = asyncio.get_running_loop().time()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if task in done:
            return task.result()
        waited = asyncio.get_running_loop().time() - self._ping_started
        return f"error: no answer for {waited:.1f} s"

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """A pooled connection; its work is committed when the block exits cleanly."""
        async with self._pool.connection() as conn:
            yield conn
