"""Riding out outages: retry an operation with exponential backoff until it succeeds or the process stops.

Used where giving up would lose something (a detection not yet on the bus, a batch not yet stored) and
crashing would only restart into the same outage. Every failure is logged with the attempt number;
`Backoff.failing` tells a health check that the role is waiting on something.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import psycopg_pool

T = TypeVar("T")

# Errors that say "the database or the network is away", not "this request is wrong": wait and retry.
TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    ConnectionError,
    TimeoutError,
)

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The process is stopping: the operation was not completed and should be left for the next run."""


class Backoff:
    """Delays of `first` seconds doubling up to `cap`; reset after a success."""

    def __init__(self, first: float = 0.1, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first
        self.failures = 0  # consecutive

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def succeeded(self) -> None:
        self.delay = self.first
        self.failures = 0

    async def wait(self, stop: asyncio.Event | None) -> None:
        """Sleep the current delay (returning early if `stop` is set) and lengthen the next one."""
        self.failures += 1
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def until_done(
    what: str, op: Callable[[], Awaitable[T]], *, stop: asyncio.Event | None, backoff: Backoff | None = None
) -> T:
    """`await op()` until it succeeds; raises Stopped if `stop` is set while it keeps failing."""
    b = backoff or Backoff()
    while True:
        try:
            result = await op()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if stop is not None and stop.is_set():
                raise Stopped(what) from exc
            log.warning("%s failed (attempt %d, again in %.1f s): %s", what, b.failures + 1, b.delay, exc)
            await b.wait(stop)
            if stop is not None and stop.is_set():
                raise Stopped(what) from exc
            continue
        b.succeeded()
        return result
