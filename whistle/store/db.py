"""The database handle every role shares: an async connection pool with the schema migrated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

    async def ping(self) -> str:
        """ "ok" when the database answers, else "error: <what went wrong>"; never raises."""
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return "ok"

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """A pooled connection; its work is committed when the block exits cleanly."""
        async with self._pool.connection() as conn:
            yield conn
