"""Reads over what collectors write: dead letters and device state."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row, dict_row

from whistle.access import Scope
from whistle.store.db import Database
from whistle.store.query import Where


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: int
    topic: str
    reason: str
    detail: str
    received_at: datetime
    payload: str  # UTF-8 text, or base64 when the bytes were not UTF-8
    payload_encoding: str  # "utf-8" or "base64"


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A registered device, where it is, and what it last told us."""

    id: str
    type: str
    household_id: str | None
    building_id: str | None
    grid_id: str | None
    location: str | None
    last_seen: datetime | None
    online: bool | None
    battery_pct: float | None
    rssi_dbm: float | None
    gateway_id: str | None = None


@dataclass(frozen=True, slots=True)
class UnregisteredDevice:
    device_id: str
    device_type: str
    first_seen: datetime
    last_seen: datetime
    last_topic: str
    messages: int


@dataclass(frozen=True, slots=True)
class UsageInterval:
    ts: datetime
    total: float | None
    delta: float | None
    interval_ms: int | None
    reset: bool
    gap: bool


def _payload_text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


async def list_dead_letters(
    db: Database, *, reason: str | None, since: datetime | None, limit: int, cursor: int | None
) -> tuple[list[DeadLetterRow], int | None]:
    """Newest first; the cursor is the id to continue below."""
    where = Where().eq({"reason": reason or None})
    if since:
        where.add("received_at >= %s", since)
    if cursor is not None:
        where.add("id < %s", cursor)
    sql = (
        f"SELECT id, topic, reason, detail, received_at, payload FROM dead_letters{where.sql()} "
        "ORDER BY id DESC LIMIT %s"
    )
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, (*where.args, limit + 1))
        rows = await cur.fetchall()
    items = []
    for r in rows[:limit]:
        text, enc = _payload_text(bytes(r["payload"]))
        items.append(DeadLetterRow(r["id"], r["topic"], r["reason"], r["detail"], r["received_at"], text, enc))
    return items, (int(rows[limit - 1]["id"]) if len(rows) > limit else None)


async def get_device(db: Database, device_id: str, *, scope: Scope | None = None) -> DeviceView | None:
    """The registry entry with its placement and last known state (None outside `scope`)."""
    in_scope, args = (scope or Scope.everything()).grid_sql("b.grid_id")
    async with db.connection() as conn, conn.cursor(row_factory=class_row(DeviceView)) as cur:
        await cur.execute(
            "SELECT d.id, d.type, d.household_id, COALESCE(d.building_id, h.building_id) AS building_id, "
            "b.grid_id, d.location, s.last_seen, s.online, s.battery_pct, s.rssi_dbm, d.gateway_id "
            "FROM devices d LEFT JOIN households h ON h.id = d.household_id "
            "LEFT JOIN buildings b ON b.id = COALESCE(d.building_id, h.building_id) "
            f"LEFT JOIN device_state s ON s.device_id = d.id WHERE d.id = %s AND {in_scope}",
            (device_id, *args),
        )
        return await cur.fetchone()


async def list_unregistered(db: Database, *, limit: int) -> list[UnregisteredDevice]:
    """Devices that publish without being registered, most recently heard first."""
    async with db.connection() as conn, conn.cursor(row_factory=class_row(UnregisteredDevice)) as cur:
        await cur.execute(
            "SELECT device_id, device_type, first_seen, last_seen, last_topic, messages FROM unregistered_devices "
            "WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = device_id) ORDER BY last_seen DESC LIMIT %s",
            (limit,),
        )
        return await cur.fetchall()


async def device_usage(
    db: Database, device_id: str, *, since: datetime, until: datetime, max_gap_s: float
) -> list[UsageInterval]:
    """Consumption per interval of a meter, from its stored series (whistle_usage, migration 0002)."""
    async with db.connection() as conn, conn.cursor(row_factory=class_row(UsageInterval)) as cur:
        await cur.execute(
            "SELECT ts, total, delta, interval_ms, reset, gap "
            "FROM whistle_usage(%s, %s, %s, make_interval(secs => %s))",
            (device_id, since, until, max_gap_s),
        )
        return await cur.fetchall()
