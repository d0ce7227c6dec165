"""Stored readings read back as domain values (for a rule that must learn from history)."""

from __future__ import annotations

from whistle.domain import Channel, DeviceType, Reading
from whistle.store.db import Database
from whistle.timeutil import DAY_MS, from_datetime, now_ms, to_datetime


async def stored_meter_readings(
    db: Database, household_id: str, *, days: int, until: int | None = None
) -> list[Reading]:
    """A household's water and power register readings of the last `days` (to `until`), oldest first."""
    end = until if until is not None else now_ms()
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT r.device_id, r.device_type, r.ts, r.received_at, r.payload, r.seq, d.household_id,"
            " COALESCE(d.building_id, h.building_id), b.grid_id"
            " FROM devices d JOIN households h ON h.id = d.household_id"
            " LEFT JOIN buildings b ON b.id = COALESCE(d.building_id, h.building_id)"
            " JOIN readings r ON r.device_id = d.id"
            " WHERE d.household_id = %s AND d.type IN ('water', 'power') AND r.channel = 'data'"
            " AND r.ts >= %s AND r.ts <= %s ORDER BY r.ts, r.device_id",
            (household_id, to_datetime(end - days * DAY_MS), to_datetime(end)),
        )
        rows = await cur.fetchall()
    return [
        Reading(
            device_id=dev,
            device_type=DeviceType(dtype),
            channel=Channel.DATA,
            ts=from_datetime(ts),
            received_at=from_datetime(rx),
            values=payload,
            seq=seq if seq is not None and seq >= 0 else None,
            household_id=hid,
            building_id=bid,
            grid_id=gid,
        )
        for dev, dtype, ts, rx, payload, seq, hid, bid, gid in rows
    ]
