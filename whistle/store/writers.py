"""Batch writers for what collectors accept and refuse: readings by COPY, dead letters, device state."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle.domain import Channel, DeadLetter, Reading
from whistle.timeutil import from_datetime, to_datetime

_COPY_READINGS = (
    "COPY readings (ts, device_id, device_type, channel, seq, received_at, household_id, building_id, payload) "
    "FROM STDIN"
)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _row(r: Reading) -> tuple[object, ...]:
    return (
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


async def copy_readings(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> None:
    """Write readings with one COPY (rows outside every daily partition land in the default one).

    Raises UniqueViolation if any reading is already stored: the caller takes the slow path then.
    """
    if not readings:
        return
    async with conn.cursor() as cur, cur.copy(_COPY_READINGS) as copy:
        for r in readings:
            await copy.write_row(_row(r))


async def insert_dead_letters(conn: AsyncConnection[TupleRow], letters: Sequence[DeadLetter]) -> None:
    if not letters:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO dead_letters (topic, reason, detail, payload, received_at) VALUES (%s, %s, %s, %s, %s)",
            [(d.topic, d.reason, d.detail, d.payload, to_datetime(d.received_at)) for d in letters],
        )


@dataclass(slots=True)
class _State:
    last_seen: int
    online: bool
    battery_pct: float | None = None
    rssi_dbm: float | None = None


class DeviceStates:
    """Last seen, online, battery and signal per device, coalesced in memory and written in one go.

    Writing device state once per batch costs a row per device per batch; coalescing over a second
    costs a row per device per second. Newest event time wins, in memory and in the database.
    """

    def __init__(self) -> None:
        self._pending: dict[str, _State] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, readings: Iterable[Reading]) -> None:
        pending = self._pending
        for r in readings:
            st = pending.get(r.device_id)
            newest = st is None or r.ts >= st.last_seen
            if st is None:
                st = pending[r.device_id] = _State(r.ts, True)
            elif newest:
                st.last_seen = r.ts
            if newest:
                st.online = bool(r.values.get("online", True)) if r.channel is Channel.STATUS else True
            if r.channel is Channel.STATUS:
                # an older status still tells the battery and signal if nothing newer did
                v = r.values
                if "battery_pct" in v and (newest or st.battery_pct is None):
                    st.battery_pct = float(v["battery_pct"])
                if "rssi_dbm" in v and (newest or st.rssi_dbm is None):
                    st.rssi_dbm = float(v["rssi_dbm"])

    def drain(self) -> dict[str, _State]:
        out, self._pending = self._pending, {}
        return out

    def restore(self, drained: dict[str, _State]) -> None:
        """Put back what a failed write drained (newer pending entries win)."""
        for device_id, st in drained.items():
            current = self._pending.get(device_id)
            if current is None or current.last_seen < st.last_seen:
                self._pending[device_id] = st

    async def flush(self, conn: AsyncConnection[TupleRow]) -> int:
        """Write what is pending (sorted by device, so concurrent writers never deadlock)."""
        drained = self.drain()
        if not drained:
            return 0
        rows = [
            (d, to_datetime(st.last_seen), st.online, st.battery_pct, st.rssi_dbm) for d, st in sorted(drained.items())
        ]
        try:
            async with conn.cursor() as cur:
                await cur.executemany(_UPSERT_STATE, rows)
        except BaseException:
            self.restore(drained)
            raise
        return len(rows)


_UPSERT_STATE = (
    "INSERT INTO device_state (device_id, last_seen, online, battery_pct, rssi_dbm) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET "
    "online = CASE WHEN EXCLUDED.last_seen >= device_state.last_seen THEN EXCLUDED.online "
    "ELSE device_state.online END, "
    "last_seen = GREATEST(device_state.last_seen, EXCLUDED.last_seen), "
    "battery_pct = COALESCE(EXCLUDED.battery_pct, device_state.battery_pct), "
    "rssi_dbm = COALESCE(EXCLUDED.rssi_dbm, device_state.rssi_dbm), updated_at = now()"
)


async def upsert_device_state(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> None:
    """Write the state the given readings imply, at once."""
    states = DeviceStates()
    states.add(readings)
    await states.flush(conn)


_STAGE = "CREATE TEMP TABLE IF NOT EXISTS readings_stage (ord integer, LIKE readings) ON COMMIT DELETE ROWS"
_COPY_STAGE = (
    "COPY readings_stage (ord, ts, device_id, device_type, channel, seq, received_at, household_id, building_id, "
    "payload) FROM STDIN"
)


async def insert_readings_dedup(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> list[bool]:
    """Insert readings, skipping those already stored (same device, ts, channel and seq).

    The slow path, taken only when a plain COPY met a duplicate: COPY into a temporary table,
    then INSERT … ON CONFLICT DO NOTHING. Returns, per reading, whether it was new.
    """
    async with conn.cursor() as cur:
        await cur.execute(_STAGE)
        async with cur.copy(_COPY_STAGE) as copy:
            for i, r in enumerate(readings):
                await copy.write_row((i, *_row(r)))
        await cur.execute(
            "INSERT INTO readings SELECT ts, device_id, device_type, channel, seq, received_at, household_id, "
            "building_id, payload FROM readings_stage ORDER BY ord ON CONFLICT DO NOTHING "
            "RETURNING device_id, ts, channel, seq"
        )
        inserted = Counter((d, from_datetime(ts), c, q) for d, ts, c, q in await cur.fetchall())
    flags: list[bool] = []
    for r in readings:
        key = (r.device_id, r.ts, r.channel.value, r.seq)
        if inserted[key] > 0:
            inserted[key] -= 1
            flags.append(True)
        else:
            flags.append(False)
    return flags


async def upsert_unregistered(conn: AsyncConnection[TupleRow], seen: Mapping[str, tuple[str, str, int, int]]) -> None:
    """Record devices that publish without being registered: id → (type, topic, messages, last received)."""
    if not seen:
        return
    rows = [(d, t, to_datetime(at), to_datetime(at), topic, n) for d, (t, topic, n, at) in sorted(seen.items())]
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO unregistered_devices (device_id, device_type, first_seen, last_seen, last_topic, messages) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET "
            "device_type = EXCLUDED.device_type, last_seen = GREATEST(unregistered_devices.last_seen, "
            "EXCLUDED.last_seen), last_topic = EXCLUDED.last_topic, "
            "messages = unregistered_devices.messages + EXCLUDED.messages",
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
