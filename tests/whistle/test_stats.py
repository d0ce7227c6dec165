"""Hourly statistics through the one query surface, on whichever path the database took (plain in CI;
TimescaleDB's continuous aggregates when WHISTLE_TEST_PG_ADMIN_URL points at a server with it)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from alerts.service import AlertService
from tests.helpers import small_registry, wait_for
from whistle.domain import AlarmKind, Channel, Detection, DeviceType, Reading, Severity, SubjectType
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database
from whistle.store.stats import (
    AlarmHour,
    ReadingHour,
    alarms_per_hour,
    maintain_statistics,
    readings_per_hour,
    refresh_statistics,
    statistics_backend,
)
from whistle.store.writers import copy_readings
from whistle.timeutil import now_ms

HOUR = 3_600_000
H0 = 1_795_003_200_000  # 2026-11-18T12:00:00Z, a whole hour
W, S, E = DeviceType.WATER, DeviceType.SMOKE, DeviceType.ELEVATOR


def reading(device: str, dtype: DeviceType, ts: int, building: str | None, n: int = 0) -> Reading:
    channel = Channel.EVENT if dtype in (S, E) else Channel.DATA
    values: dict[str, Any] = {"event": "test"} if channel is Channel.EVENT else {"total_m3": 1.0 + n}
    return Reading(device, dtype, channel, ts, ts + 10, values, n, None, building, None)


def batch() -> list[Reading]:
    out = [reading("WM-000001", W, H0 + i * 900_000, "RJ-B0001", i) for i in range(4)]  # 4 in hour 0
    out += [reading("WM-000001", W, H0 + HOUR + i * 900_000, "RJ-B0001", 10 + i) for i in range(2)]  # 2 in hour 1
    out.append(reading("SM-0001", S, H0 + HOUR + 60_000, "RJ-B0001", 1))
    out += [reading("EL-0002", E, H0 + i * 60_000, "RJ-B0002", i) for i in range(3)]  # grid M02
    out.append(reading("WM-LOST", W, H0 + 5_000, None, 1))  # no building: no grid
    return out


async def write(db: Database, readings: list[Reading]) -> None:
    async with db.connection() as conn:
        await copy_readings(conn, readings)


async def test_readings_per_hour_grid_and_type_before_and_after_materialising(db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()))
    await write(db, batch())
    expected = [
        ReadingHour(H0, "RJ-G1-M01", W, 4),
        ReadingHour(H0, "RJ-G1-M02", E, 3),
        ReadingHour(H0, None, W, 1),
        ReadingHour(H0 + HOUR, "RJ-G1-M01", S, 1),
        ReadingHour(H0 + HOUR, "RJ-G1-M01", W, 2),
    ]

    def key(r: ReadingHour) -> tuple[int, str, str]:
        return (r.hour, r.grid_id or "~", r.device_type.value)

    got = await readings_per_hour(db, since=H0 + 1, until=H0 + 2 * HOUR)  # `since` rounds down to its hour
    assert sorted(got, key=key) == sorted(expected, key=key)
    await refresh_statistics(db, since=H0, until=H0 + 2 * HOUR)
    assert sorted(await readings_per_hour(db, since=H0, until=H0 + 2 * HOUR), key=key) == sorted(expected, key=key)
    # a late reading of a materialised hour counts once the hour is refreshed again
    await write(db, [reading("WM-000001", W, H0 + 30_000, "RJ-B0001", 99)])
    await refresh_statistics(db, since=H0, until=H0 + HOUR)
    got = await readings_per_hour(db, since=H0, until=H0 + HOUR, grid_ids=["RJ-G1-M01"])
    assert got == [ReadingHour(H0, "RJ-G1-M01", W, 5)]
    # readings above the materialised hours are counted as they arrive (the live part)
    await write(db, [reading("WM-000001", W, H0 + 3 * HOUR + 1, "RJ-B0001", 100)])
    got = await readings_per_hour(db, since=H0 + 3 * HOUR, until=H0 + 4 * HOUR)
    assert got == [ReadingHour(H0 + 3 * HOUR, "RJ-G1-M01", W, 1)]
    # the grid is the building's grid now: a building moved to another grid takes its history along
    reg = small_registry()
    reg["buildings"][1]["grid_id"] = "RJ-G1-M01"
    await import_registry(db, parse_registry(reg))
    got = await readings_per_hour(db, since=H0, until=H0 + HOUR, grid_ids=["RJ-G1-M01"])
    assert sorted(got, key=key) == [ReadingHour(H0, "RJ-G1-M01", E, 3), ReadingHour(H0, "RJ-G1-M01", W, 5)]


def detection(kind: AlarmKind, severity: Severity, subject: str, ts: int, grid: str) -> Detection:
    return Detection(kind, severity, SubjectType.DEVICE, subject, ts, grid_id=grid, source_id=f"{subject}:{ts}")


async def test_alarms_per_hour_grid_kind_and_severity(db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()))
    service = AlertService(db, clock=lambda: H0 + 3 * HOUR)
    for d in (
        detection(AlarmKind.SMOKE_FAULT, Severity.MINOR, "SM-0001", H0 + 10, "RJ-G1-M01"),
        detection(AlarmKind.SMOKE_FAULT, Severity.MINOR, "SM-0002", H0 + 20, "RJ-G1-M01"),
        detection(AlarmKind.ELEVATOR_FAULT, Severity.MAJOR, "EL-0002", H0 + 30, "RJ-G1-M02"),
        detection(AlarmKind.SMOKE_TAMPER, Severity.MAJOR, "SM-0001", H0 + HOUR + 5, "RJ-G1-M01"),
    ):
        await service.apply(d)
    expected = [
        AlarmHour(H0, "RJ-G1-M01", AlarmKind.SMOKE_FAULT, Severity.MINOR, 2),
        AlarmHour(H0, "RJ-G1-M02", AlarmKind.ELEVATOR_FAULT, Severity.MAJOR, 1),
        AlarmHour(H0 + HOUR, "RJ-G1-M01", AlarmKind.SMOKE_TAMPER, Severity.MAJOR, 1),
    ]
    assert await alarms_per_hour(db, since=H0, until=H0 + 2 * HOUR) == expected
    await refresh_statistics(db, since=H0, until=H0 + 2 * HOUR)
    assert await alarms_per_hour(db, since=H0, until=H0 + 2 * HOUR) == expected
    assert await alarms_per_hour(db, since=H0, until=H0 + 2 * HOUR, grid_ids=["RJ-G1-M02"]) == expected[1:2]
    assert await alarms_per_hour(db, since=H0 + HOUR, until=H0 + 2 * HOUR) == expected[2:]


async def test_the_backend_is_the_one_the_extension_decides(db: Database) -> None:
    async with await psycopg.AsyncConnection.connect(db.conninfo) as conn:
        row = await (await conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")).fetchone()
    assert row is not None
    assert await statistics_backend(db) == ("timescaledb" if row[0] else "plain")


async def test_the_maintenance_task_materialises_and_keeps_running_until_stopped(db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()))
    await write(db, batch())
    stop = asyncio.Event()
    task = asyncio.create_task(maintain_statistics(db, stop, every_s=0.2, lookback_hours=48))

    async def materialised() -> bool:
        async with db.connection() as conn:
            cur = await conn.execute("SELECT done_until > '-infinity' FROM statistics_state")
            row = await cur.fetchone()
        return bool(row and row[0])

    await wait_for(materialised, timeout=30)
    await asyncio.sleep(0.5)
    assert not task.done()  # a role's task: returning would stop the process
    got = await readings_per_hour(db, since=H0, until=H0 + 2 * HOUR, grid_ids=["RJ-G1-M02"])
    assert got == [ReadingHour(H0, "RJ-G1-M02", E, 3)]
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_history_older_than_the_refresh_window_is_counted_after_the_first_maintenance(db: Database) -> None:
    """A database that already holds weeks of readings when the statistics arrive (an upgrade): a refresh
    of the recent window alone — what TimescaleDB's policy does first — must not hide the older hours."""
    await import_registry(db, parse_registry(small_registry()))
    now = now_ms()
    old, recent = now - 60 * 24 * HOUR, now - 5 * HOUR
    old -= old % HOUR
    recent -= recent % HOUR
    await write(
        db,
        [reading("WM-000001", W, t + i * 60_000, "RJ-B0001", n) for n, t in enumerate((old, recent)) for i in range(3)],
    )
    await refresh_statistics(db, since=now - 46 * 24 * HOUR, until=now - HOUR)
    stop = asyncio.Event()
    task = asyncio.create_task(maintain_statistics(db, stop, every_s=0.2, lookback_hours=48))

    async def counted() -> list[ReadingHour]:
        return await readings_per_hour(db, since=old, until=old + HOUR)

    try:
        assert await wait_for(counted, timeout=30) == [ReadingHour(old, "RJ-G1-M01", W, 3)]
        got = await readings_per_hour(db, since=recent, until=recent + HOUR)
        assert got == [ReadingHour(recent, "RJ-G1-M01", W, 3)]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
