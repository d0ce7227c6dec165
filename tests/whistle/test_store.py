from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import psycopg
import pytest

from whistle.domain import Channel, DeadLetter, DeviceType, Reading
from whistle.store import migrate as migrate_mod
from whistle.store.db import Database
from whistle.store.migrate import Migration, MigrationError, migrate
from whistle.store.writers import (
    copy_readings,
    drop_reading_partitions,
    ensure_reading_partitions,
    insert_dead_letters,
    upsert_device_state,
)
from whistle.timeutil import from_datetime


def ms(y: int, m: int, d: int, h: int = 0) -> int:
    return from_datetime(datetime(y, m, d, h, tzinfo=UTC))


async def test_migrations_are_recorded_and_idempotent_under_concurrency(db_url: str) -> None:
    results = await asyncio.gather(*(migrate(db_url) for _ in range(4)))
    shipped = migrate_mod.load_migrations()
    assert sorted(len(r) for r in results) == [0, 0, 0, len(shipped)]  # exactly one process applied them
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        rows = await (await conn.execute("SELECT version, name FROM schema_migrations")).fetchall()
    assert rows[:4] == [(1, "init"), (2, "collectors"), (3, "rules"), (4, "households")]
    assert [r[0] for r in rows] == [m.version for m in shipped]
    assert await migrate(db_url) == []


async def test_an_edited_applied_migration_is_refused(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await migrate(db_url)
    real = migrate_mod.load_migrations()
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in real]
    monkeypatch.setattr(migrate_mod, "load_migrations", lambda: edited)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(db_url)


def reading(device: str, ts: int, **values: float) -> Reading:
    return Reading(device, DeviceType.WATER, Channel.DATA, ts, ts + 5, values or {"total_m3": 1.5}, 1, "H1", "B1")


async def count(db: Database, sql: str) -> int:
    async with db.connection() as conn:
        row = await (await conn.execute(sql)).fetchone()
    assert row is not None
    return int(row[0])


async def test_readings_are_range_partitioned_by_day_and_default_rows_move(db: Database) -> None:
    async with db.connection() as conn:
        # before any daily partition exists a reading lands in the default partition
        await copy_readings(conn, [reading("WM-1", ms(2026, 11, 10, 3)), reading("WM-1", ms(2026, 11, 12, 3))])
    assert await count(db, "SELECT count(*) FROM readings_default") == 2
    async with db.connection() as conn:
        created = await ensure_reading_partitions(conn, now_ms=ms(2026, 11, 11), back_days=1, ahead_days=2)
    # [today - 2 days, today + 2 days) = 2026-11-09 .. 2026-11-12
    assert created == 4
    assert await count(db, "SELECT count(*) FROM readings_default") == 0
    assert await count(db, "SELECT count(*) FROM readings_20261110") == 1
    assert await count(db, "SELECT count(*) FROM readings_20261112") == 1
    assert await count(db, "SELECT count(*) FROM readings") == 2
    async with db.connection() as conn:
        again = await ensure_reading_partitions(conn, now_ms=ms(2026, 11, 11), back_days=1, ahead_days=2)
        dropped = await drop_reading_partitions(conn, now_ms=ms(2026, 11, 12), retention_days=2)
    assert again == 0
    assert dropped == 1  # only the partition of 2026-11-09 ends on or before 2026-11-10
    assert await count(db, "SELECT count(*) FROM readings") == 2


async def test_copy_writes_every_column(db: Database) -> None:
    ts = ms(2026, 11, 20, 8)
    async with db.connection() as conn:
        await copy_readings(conn, [reading("WM-7", ts, total_m3=12.5, flow_lph=3.0)])
        row = await (
            await conn.execute(
                "SELECT ts, device_id, device_type, channel, seq, household_id, building_id, payload FROM readings"
            )
        ).fetchone()
    assert row == (
        datetime(2026, 11, 20, 8, tzinfo=UTC),
        "WM-7",
        "water",
        "data",
        1,
        "H1",
        "B1",
        {"total_m3": 12.5, "flow_lph": 3.0},
    )


async def test_device_state_keeps_the_newest(db: Database) -> None:
    t = ms(2026, 11, 20, 8)
    status = Reading("WM-7", DeviceType.WATER, Channel.STATUS, t, t, {"battery_pct": 80.0, "online": True})
    offline = Reading("WM-7", DeviceType.WATER, Channel.STATUS, t + 1000, t + 1000, {"online": False})
    async with db.connection() as conn:
        await upsert_device_state(conn, [offline, status])
        late = Reading("WM-7", DeviceType.WATER, Channel.DATA, t - 5000, t, {"total_m3": 1.0})
        await upsert_device_state(conn, [late])  # an older reading arriving late changes nothing
        row = await (await conn.execute("SELECT last_seen, online, battery_pct FROM device_state")).fetchone()
    assert row == (datetime(2026, 11, 20, 8, 0, 1, tzinfo=UTC), False, 80.0)


async def test_dead_letters_keep_raw_bytes(db: Database) -> None:
    async with db.connection() as conn:
        await insert_dead_letters(conn, [DeadLetter("whistle/v1/smoke/X/event", "not_json", "bad", b"\xff{", 1000)])
        row = await (await conn.execute("SELECT topic, reason, payload FROM dead_letters")).fetchone()
    assert row == ("whistle/v1/smoke/X/event", "not_json", b"\xff{")


def test_partition_dates_are_utc_days() -> None:
    assert datetime.fromtimestamp(ms(2026, 11, 10, 23) / 1000, tz=UTC).date() == date(2026, 11, 10)


async def test_usage_in_sql_follows_the_register_rules_of_python(db: Database) -> None:
    """whistle_usage (SQL) and whistle.registers.usage (Python) agree on the same series."""
    from whistle.registers import RegisterPoint, advance, usage

    t0 = ms(2026, 11, 20)
    m = 900_000
    series = [
        (t0, 100.0),
        (t0 + m, 100.2),
        (t0 + 2 * m, 100.2 - 1e-9),
        (t0 + 3 * m, 3.0),  # reset
        (t0 + 3 * m + 3 * 3_600_000, 3.5),
        (t0 + 3 * m + 3 * 3_600_000 + m, 3.75),
    ]  # gap, then normal
    async with db.connection() as conn:
        # stored out of order, as late batches arrive
        await copy_readings(conn, [reading("WM-9", ts, total_m3=v) for ts, v in reversed(series)])
        rows = await (
            await conn.execute(
                "SELECT ts, delta, interval_ms, reset, gap FROM whistle_usage('WM-9', %s, %s)",
                (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),
            )
        ).fetchall()
        window = await (
            await conn.execute(
                "SELECT delta, interval_ms FROM whistle_usage('WM-9', %s, %s)",
                (datetime(2026, 11, 20, 0, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),
            )
        ).fetchall()
    prev: RegisterPoint | None = None
    expected = []
    for ts, total in series:
        u = usage(prev, ts, total)
        expected.append(
            (from_datetime(datetime.fromtimestamp(ts / 1000, tz=UTC)), u.delta, u.interval_ms, u.reset, u.gap)
        )
        prev = advance(prev, ts, total)
    got = [(from_datetime(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
    assert [g[2:] for g in got] == [e[2:] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert (g[1] is None) == (e[1] is None) and (g[1] is None or abs(g[1] - e[1]) < 1e-9)
    assert [g[1] is None for g in got] == [True, False, False, True, False, False]
    # a window starting mid-series still gets the delta of its first interval (from the reading before it)
    assert len(window) == 4 and window[0] == (0.0, 900_000)
