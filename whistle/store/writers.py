"""Batch writers for what collectors accept and refuse: readings by COPY, dead letters, device state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle.domain import Channel, DeadLetter, Reading
from whistle.timeutil import to_datetime

_COPY_READINGS = (
    "COPY readings (ts, device_id, device_type, channel, seq, received_at, household_id, building_id, payload) "
    "FROM STDIN"
)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


async def copy_readings(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> None:
    """Write readings with one COPY (rows outside every daily partition land in the default one)."""
    if not readings:
        return
    async with conn.cursor() as cur, cur.copy(_COPY_READINGS) as copy:
        for r in readings:
            await copy.write_row(
                (
                    to_datetime(r.ts),
                    r.device_id,
                    r.device_type.value,
                    r.channel.value,
                    r.seq,
                    to_datetime(r.received_at),
                    r.household_id,
                    r.building_id,
                    _dumps(dict(r.values)),
                )
            )


async def insert_dead_letters(conn: AsyncConnection[TupleRow], letters: Sequence[DeadLetter]) -> None:
    if not letters:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO dead_letters (topic, reason, detail, payload, received_at) VALUES (%s, %s, %s, %s, %s)",
            [(d.topic, d.reason, d.detail, d.payload, to_datetime(d.received_at)) for d in letters],
        )


async def upsert_device_state(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> None:
    """Last seen, online, battery and signal per device, from the newest reading of each."""
    newest: dict[str, Reading] = {}
    battery: dict[str, float] = {}
    rssi: dict[str, float] = {}
    online: dict[str, bool] = {}
    for r in sorted(readings, key=lambda x: x.ts):
        newest[r.device_id] = r
        if r.channel is Channel.STATUS:
            if "battery_pct" in r.values:
                battery[r.device_id] = float(r.values["battery_pct"])
            if "rssi_dbm" in r.values:
                rssi[r.device_id] = float(r.values["rssi_dbm"])
        online[r.device_id] = bool(r.values.get("online", True)) if r.channel is Channel.STATUS else True
    if not newest:
        return
    rows = [(d, to_datetime(r.ts), online[d], battery.get(d), rssi.get(d)) for d, r in sorted(newest.items())]
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO device_state (device_id, last_seen, online, battery_pct, rssi_dbm) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET "
            "online = CASE WHEN EXCLUDED.last_seen >= device_state.last_seen THEN EXCLUDED.online "
            "ELSE device_state.online END, "
            "last_seen = GREATEST(device_state.last_seen, EXCLUDED.last_seen), "
            "battery_pct = COALESCE(EXCLUDED.battery_pct, device_state.battery_pct), "
            "rssi_dbm = COALESCE(EXCLUDED.rssi_dbm, device_state.rssi_dbm), updated_at = now()",
            rows,
        )


async def ensure_reading_partitions(
    conn: AsyncConnection[TupleRow], *, now_ms: int, back_days: float, ahead_days: int = 3
) -> int:
    """Create the daily partitions from the horizon to a few days ahead; returns how many were created."""
    now = to_datetime(now_ms).date()
    start = now - timedelta(days=int(back_days) + 1)
    cur = await conn.execute(
        "SELECT whistle_ensure_reading_partitions(%s, %s)", (start, now + timedelta(days=ahead_days))
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def drop_reading_partitions(conn: AsyncConnection[TupleRow], *, now_ms: int, retention_days: int) -> int:
    """Drop the daily partitions older than the retention; returns how many were dropped."""
    before = to_datetime(now_ms).date() - timedelta(days=retention_days)
    cur = await conn.execute("SELECT whistle_drop_reading_partitions(%s)", (before,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0
