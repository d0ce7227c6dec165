"""Batch writers for what collectors accept and refuse: readings by COPY, dead letters, device state."""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle.bus import Record
from whistle.domain import Channel, DeadLetter, DeviceType, Reading
from whistle.timeutil import from_datetime, local_day, to_datetime

_METERS = frozenset({DeviceType.WATER, DeviceType.POWER})

_COLUMNS = "ts, device_id, device_type, channel, seq, received_at, household_id, building_id, payload"
_COPY_READINGS = f"COPY readings ({_COLUMNS}) FROM STDIN WITH (FORMAT binary)"

# PostgreSQL's binary COPY format: a header, then per row a field count and each field as a 32-bit
# length (-1 for NULL) and its binary value, then a trailer. timestamptz is int64 microseconds since
# 2000-01-01 UTC; text is UTF-8; jsonb is a version byte (1) and the JSON text.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
_PG_EPOCH_MS = 946_684_800_000
_TS = struct.Struct("!iq")  # length 8, then the value
_LEN = struct.Struct("!i")
_NULL = _LEN.pack(-1)
_FIELDS = struct.pack("!h", 9)
_FIELDS_STAGED = struct.pack("!h", 10)
_ORD = struct.Struct("!ii")  # length 4, then int4


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode()
    return _LEN.pack(len(raw)) + raw


def stored_seq(r: Reading) -> int:
    """The `seq` column of a reading: its own `seq`, or for a reading sent without one a content key below
    zero (a 63-bit digest of its values), so a seq-less message delivered twice is stored once too."""
    if r.seq is not None:
        return r.seq
    digest = hashlib.blake2b(_dumps(dict(sorted(r.values.items()))).encode(), digest_size=8).digest()
    return -(int.from_bytes(digest, "big") >> 1) - 1


def _binary_row(r: Reading) -> bytes:
    payload = b"\x01" + _dumps(r.values).encode()
    return b"".join(
        (
            _TS.pack(8, (r.ts - _PG_EPOCH_MS) * 1000),
            _text(r.device_id),
            _text(r.device_type.value),
            _text(r.channel.value),
            _TS.pack(8, stored_seq(r)),
            _TS.pack(8, (r.received_at - _PG_EPOCH_MS) * 1000),
            _text(r.household_id),
            _text(r.building_id),
            _LEN.pack(len(payload)),
            payload,
        )
    )


def encode_copy(readings: Sequence[Reading], *, with_ord: bool = False) -> bytes:
    """Readings as one binary COPY stream (with a leading int4 ordinal column for the staging table)."""
    if with_ord:
        rows = [_FIELDS_STAGED + _ORD.pack(4, i) + _binary_row(r) for i, r in enumerate(readings)]
    else:
        rows = [_FIELDS + _binary_row(r) for r in readings]
    return b"".join((_HEADER, *rows, _TRAILER))


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


async def copy_readings(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> None:
    """Write readings with one COPY (rows outside every daily partition land in the default one).

    Raises UniqueViolation if any reading is already stored: the caller takes the slow path then.
    """
    if not readings:
        return
    data = encode_copy(readings)
    async with conn.cursor() as cur, cur.copy(_COPY_READINGS) as copy:
        await copy.write(data)


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
        ids = sorted(drained)
        columns = (
            ids,
            [to_datetime(drained[d].last_seen) for d in ids],
            [drained[d].online for d in ids],
            [drained[d].battery_pct for d in ids],
            [drained[d].rssi_dbm for d in ids],
        )
        try:
            await conn.execute(_UPSERT_STATE, columns)
        except BaseException:
            self.restore(drained)
            raise
        return len(ids)


# One statement for the whole set (arrays unnested), rows in device order so concurrent writers never deadlock.
_UPSERT_STATE = (
    "INSERT INTO device_state (device_id, last_seen, online, battery_pct, rssi_dbm) "
    "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::boolean[], %s::real[], %s::real[]) "
    "ON CONFLICT (device_id) DO UPDATE SET "
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
_COPY_STAGE = f"COPY readings_stage (ord, {_COLUMNS}) FROM STDIN WITH (FORMAT binary)"


async def insert_readings_dedup(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> list[bool]:
    """Insert readings, skipping those already stored (same device, ts, channel and seq).

    The slow path, taken only when a plain COPY met a duplicate: COPY into a temporary table,
    then INSERT … ON CONFLICT DO NOTHING. Returns, per reading, whether it was new.
    """
    async with conn.cursor() as cur:
        await cur.execute(_STAGE)
        async with cur.copy(_COPY_STAGE) as copy:
            await copy.write(encode_copy(readings, with_ord=True))
        await cur.execute(
            "INSERT INTO readings SELECT ts, device_id, device_type, channel, seq, received_at, household_id, "
            "building_id, payload FROM readings_stage ORDER BY ord ON CONFLICT DO NOTHING "
            "RETURNING device_id, ts, channel, seq"
        )
        inserted = Counter((d, from_datetime(ts), c, q) for d, ts, c, q in await cur.fetchall())
    flags: list[bool] = []
    for r in readings:
        key = (r.device_id, r.ts, r.channel.value, stored_seq(r))
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


async def insert_bus_dead_letters(
    conn: AsyncConnection[TupleRow], consumer: str, items: Sequence[tuple[Record, str]]
) -> None:
    """Keep bus records a consumer could not decode or apply (poison), with where they were and why."""
    if not items:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            'INSERT INTO bus_dead_letters (consumer, topic, partition, "offset", error, key, value)'
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(consumer, r.topic, r.partition, r.offset, error[:2000], r.key, r.value) for r, error in items],
        )


async def note_reading_days(conn: AsyncConnection[TupleRow], readings: Sequence[Reading]) -> None:
    """Remember, per local day, that meter readings of that day arrived now (the household job's to-do list)."""
    # a register closes the interval before it (the day of ts - 1 ms, as household_days counts it) and opens the
    # one after it (the day of ts)
    days = {
        d
        for r in readings
        if r.channel is Channel.DATA and r.device_type in _METERS
        for d in (local_day(r.ts - 1), local_day(r.ts))
    }
    if not days:
        return
    await conn.execute(
        "INSERT INTO reading_days (day, last_received) SELECT date '1970-01-01' + d, now() FROM unnest(%s::int[]) d"
        " ON CONFLICT (day) DO UPDATE SET last_received = now()",
        (sorted(days),),
    )
