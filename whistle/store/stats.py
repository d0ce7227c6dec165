"""Hourly statistics for the screens: alarms and readings per hour and grid, on either storage path.

Migration 0015 gives both paths the same two views, `alarms_hourly` and `readings_hourly`: with
TimescaleDB they are continuous aggregates (real-time, refreshed by Timescale's own policies); on plain
PostgreSQL `alarms_hourly` aggregates the alarm-opening log directly and `readings_hourly` is a rollup
table the app recomputes for the last `lookback` hours (`maintain_statistics`) plus the live rows above
its watermark. Callers read through `alarms_per_hour` and `readings_per_hour` and never see which path
answered. Hours are UTC buckets (whole hours in Asia/Shanghai too); a reading counts in the grid its
building belongs to now, an alarm in the grid it was raised in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import psycopg

from whistle.domain import AlarmKind, DeviceType, Severity
from whistle.store.db import Database
from whistle.timeutil import HOUR_MS, from_datetime, now_ms, to_datetime

log = logging.getLogger(__name__)

Backend = Literal["timescaledb", "plain"]
_LOCK = 0x57485354  # "WHST": one refresh at a time across processes


@dataclass(frozen=True, slots=True)
class AlarmHour:
    """Alarms of one kind and severity opened in one grid during one hour (event time)."""

    hour: int  # ms, the start of the hour
    grid_id: str | None
    kind: AlarmKind
    severity: Severity
    alarms: int


@dataclass(frozen=True, slots=True)
class ReadingHour:
    """Readings of one device type stored for one grid's buildings during one hour (event time)."""

    hour: int
    grid_id: str | None
    device_type: DeviceType
    readings: int


def _hours(since: int, until: int) -> tuple[int, int]:
    start = since - since % HOUR_MS
    return start, max(until, start)


async def statistics_backend(db: Database) -> Backend:
    """Which path migration 0015 took on this database."""
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT whistle_statistics_backend()")).fetchone()
    return "timescaledb" if row and row[0] == "timescaledb" else "plain"


async def alarms_per_hour(
    db: Database, *, since: int, until: int, grid_ids: Sequence[str] | None = None
) -> list[AlarmHour]:
    """Alarms opened per hour, grid, kind and severity in [since, until) (ms; since rounds down to its hour)."""
    start, end = _hours(since, until)
    sql = (
        "SELECT hour, grid_id, kind, severity, sum(alarms)::bigint FROM alarms_hourly "
        "WHERE hour >= %s AND hour < %s AND (%s::text[] IS NULL OR grid_id = ANY(%s::text[])) "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    grids = list(grid_ids) if grid_ids is not None else None
    async with db.connection() as conn:
        cur = await conn.execute(sql, (to_datetime(start), to_datetime(end), grids, grids))
        rows = await cur.fetchall()
    return [AlarmHour(from_datetime(r[0]), r[1], AlarmKind(r[2]), Severity(r[3]), int(r[4])) for r in rows]


async def readings_per_hour(
    db: Database, *, since: int, until: int, grid_ids: Sequence[str] | None = None
) -> list[ReadingHour]:
    """Readings stored per hour, grid and device type in [since, until) (ms; since rounds down to its hour)."""
    start, end = _hours(since, until)
    sql = (
        "SELECT r.hour, b.grid_id, r.device_type, sum(r.readings)::bigint FROM readings_hourly r "
        "LEFT JOIN buildings b ON b.id = r.building_id "
        "WHERE r.hour >= %s AND r.hour < %s AND (%s::text[] IS NULL OR b.grid_id = ANY(%s::text[])) "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    grids = list(grid_ids) if grid_ids is not None else None
    async with db.connection() as conn:
        cur = await conn.execute(sql, (to_datetime(start), to_datetime(end), grids, grids))
        rows = await cur.fetchall()
    return [ReadingHour(from_datetime(r[0]), r[1], DeviceType(r[2]), int(r[3])) for r in rows]


async def refresh_statistics(db: Database, *, since: int, until: int) -> int:
    """Bring the materialised hours in [since, until) up to date now (both paths); returns rows written
    (plain path) or 0. Timescale refreshes on its own every 30 minutes; this is for tests and backfills."""
    start, end = _hours(since, until)
    end -= end % HOUR_MS
    if await statistics_backend(db) == "timescaledb":
        if end - start < HOUR_MS:
            return 0
        # refresh_continuous_aggregate commits as it goes: it cannot run inside a transaction block
        async with await psycopg.AsyncConnection.connect(db.conninfo, autocommit=True) as conn:
            for view in ("alarms_hourly", "readings_hourly"):
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
                    (view, to_datetime(start), to_datetime(end)),
                )
        return 0
    async with db.connection() as conn:
        row = await (
            await conn.execute("SELECT whistle_refresh_statistics(%s, %s)", (to_datetime(start), to_datetime(end)))
        ).fetchone()
    return int(row[0]) if row else 0


async def _materialise_history(db: Database, now: int) -> bool:
    """TimescaleDB, once per database: materialise every hour before now. Real-time aggregation only
    adds the hours above a continuous aggregate's watermark, and the policies materialise only their
    window (46 days), so without this the hours of a database upgraded with its history would be
    missing. True once it is done (here or by another process)."""
    async with await psycopg.AsyncConnection.connect(db.conninfo, autocommit=True) as conn:
        got = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,))).fetchone()
        if not got or not got[0]:
            return False
        try:
            cur = await conn.execute(
                "SELECT done_until = '-infinity' FROM statistics_state WHERE name = 'readings_hourly'"
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                return True
            end = to_datetime(now - now % HOUR_MS)
            for view in ("alarms_hourly", "readings_hourly"):
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, %s::timestamptz)", (view, end)
                )
            await conn.execute("UPDATE statistics_state SET done_until = %s WHERE name = 'readings_hourly'", (end,))
            return True
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))


async def maintain_statistics(db: Database, stop: asyncio.Event, *, every_s: float, lookback_hours: float) -> None:
    """Keep the hourly statistics current until `stop`. Plain path: every `every_s`, recompute the
    readings rollup for the closed hours of the last `lookback_hours` (late and in-flight rows land
    within it) and move the watermark to the current hour, one process at a time (an advisory lock).
    TimescaleDB: materialise the history once; its own policies do the rest."""
    lookback_ms = int(lookback_hours * HOUR_MS)
    backend: Backend | None = None
    history_done = False
    while not stop.is_set():
        try:
            now = now_ms()
            backend = backend or await statistics_backend(db)
            if backend == "timescaledb":
                history_done = history_done or await _materialise_history(db, now)
            else:
                async with db.connection() as conn, conn.transaction():
                    got = await (await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK,))).fetchone()
                    if got and got[0]:
                        await conn.execute(
                            "SELECT whistle_refresh_statistics(%s, %s)",
                            (to_datetime(now - lookback_ms), to_datetime(now)),
                        )
        except Exception:
            log.exception("statistics maintenance failed; retrying later")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
