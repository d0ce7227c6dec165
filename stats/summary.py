"""The screen's counters: today's alarms, open and overdue tickets, today's response times, device health.

"Today" is the local day (Asia/Shanghai) of `now` and counts by wall time (`detected_at`, and the
tickets' own timestamps), the clock the operations center lives by. MTTA is over the tickets first
answered today (from their escalation base), time to arrive over those that arrived today, MTTR over
those resolved today (from creation). A ticket is overdue while it waits past a deadline of its frozen
policy (stats/timeliness.py) with its alarms not all cleared.

Device health is per type: registered, heard from and online (its last status said online and no
device.offline alarm is open), offline, never heard from; and batteries below a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row

from stats.timeliness import TICKET_TIMELINESS
from whistle.domain import DeviceType
from whistle.store.db import Database
from whistle.timeutil import CHINA_TZ


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    type: str
    total: int
    online: int
    offline: int
    never_seen: int
    low_battery: int


@dataclass(frozen=True, slots=True)
class Summary:
    now: datetime
    day_start: datetime  # local midnight
    alarms_today: int
    alarms_today_by_kind: dict[str, int]
    alarms_today_by_severity: dict[str, int]
    open_alarms_by_severity: dict[str, int]
    open_alarms_silenced: int
    open_tickets_by_status: dict[str, int]
    overdue_tickets: int
    tickets_created_today: int
    tickets_resolved_today: int
    mtta_s: float | None
    mtt_arrive_s: float | None
    mttr_s: float | None
    devices: list[DeviceHealth]
    low_battery_pct: float
    active_silences: int

    @property
    def open_alarms(self) -> int:
        return sum(self.open_alarms_by_severity.values())

    @property
    def open_tickets(self) -> int:
        return sum(self.open_tickets_by_status.values())


def local_midnight(now: datetime) -> datetime:
    """The start of `now`'s local day (Asia/Shanghai)."""
    local = now.astimezone(CHINA_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _scope(grids: Sequence[str] | None, column: str) -> str:
    return "" if grids is None else f" AND {column} = ANY(%(grids)s)"


def _round(x: float | None) -> float | None:
    return round(float(x), 1) if x is not None else None


async def summary(
    db: Database, *, now: datetime, low_battery_pct: float = 20.0, grids: Sequence[str] | None = None
) -> Summary:
    """The counters of the screen at `now`."""
    start = local_midnight(now)
    args = {"now": now, "start": start, "grids": list(grids or ()), "low": low_battery_pct}
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT kind, severity, count(*) AS n FROM alarms WHERE detected_at >= %(start)s "
            "AND detected_at <= %(now)s" + _scope(grids, "grid_id") + " GROUP BY kind, severity",
            args,
            prepare=False,
        )
        today = await cur.fetchall()
        await cur.execute(
            "SELECT severity, count(*) AS n, count(silence_id) AS silenced FROM alarms WHERE status <> 'cleared'"
            + _scope(grids, "grid_id")
            + " GROUP BY severity",
            args,
            prepare=False,
        )
        open_alarms = await cur.fetchall()
        await cur.execute(
            f"WITH per AS ({TICKET_TIMELINESS} WHERE t.status IN ('dispatched', 'acknowledged', 'on_site')"
            f"{_scope(grids, 't.grid_id')}) "
            "SELECT status, count(*) AS n, count(*) FILTER (WHERE (response IS NULL AND ack_assessed) "
            "OR (arrived_at IS NULL AND arrive_assessed)) AS overdue FROM per GROUP BY status",
            args,
            prepare=False,
        )
        open_tickets = await cur.fetchall()
        await cur.execute(
            "SELECT count(*) FILTER (WHERE response >= %(start)s) AS responded, "
            "avg(extract(epoch FROM response - base)) FILTER (WHERE response >= %(start)s) AS mtta, "
            "avg(extract(epoch FROM arrived_at - base)) FILTER (WHERE arrived_at >= %(start)s) AS mtt_arrive, "
            "count(*) FILTER (WHERE resolved_at >= %(start)s) AS resolved, "
            "avg(extract(epoch FROM resolved_at - created_at)) FILTER (WHERE resolved_at >= %(start)s) AS mttr "
            "FROM (SELECT t.*, COALESCE(t.escalation_base_at, t.created_at) AS base, "
            "COALESCE(t.acknowledged_at, t.arrived_at, t.resolved_at) AS response FROM tickets t "
            "WHERE (t.acknowledged_at >= %(start)s OR t.arrived_at >= %(start)s OR t.resolved_at >= %(start)s)"
            + _scope(grids, "t.grid_id")
            + ") today",
            args,
            prepare=False,
        )
        times = await cur.fetchone()
        await cur.execute(
            "SELECT count(*) AS n FROM tickets WHERE created_at >= %(start)s AND created_at <= %(now)s"
            + _scope(grids, "grid_id"),
            args,
            prepare=False,
        )
        created = await cur.fetchone()
        devices_sql = (
            "SELECT d.type, count(*) AS total, count(s.device_id) AS seen, "
            "count(*) FILTER (WHERE s.device_id IS NOT NULL AND (NOT s.online OR off.subject_id IS NOT NULL)) "
            "AS offline, count(*) FILTER (WHERE s.battery_pct < %(low)s) AS low_battery "
            "FROM devices d LEFT JOIN device_state s ON s.device_id = d.id "
            "LEFT JOIN (SELECT DISTINCT subject_id FROM alarms WHERE kind = 'device.offline' "
            "AND subject_type = 'device' AND status <> 'cleared') off ON off.subject_id = d.id "
        )
        if grids is not None:
            devices_sql += (
                "LEFT JOIN households h ON h.id = d.household_id "
                "JOIN buildings b ON b.id = COALESCE(d.building_id, h.building_id) WHERE b.grid_id = ANY(%(grids)s) "
            )
        await cur.execute(devices_sql + "GROUP BY d.type", args, prepare=False)
        device_rows = {r["type"]: r for r in await cur.fetchall()}
        await cur.execute(
            "SELECT count(*) AS n FROM silences WHERE starts_at <= %(now)s AND ends_at > %(now)s", args, prepare=False
        )
        silences = await cur.fetchone()
    assert times is not None and created is not None and silences is not None
    by_kind: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for r in today:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["n"]
        by_severity[r["severity"]] = by_severity.get(r["severity"], 0) + r["n"]
    devices = []
    for t in DeviceType:
        d = device_rows.get(t.value)
        if d is None:
            devices.append(DeviceHealth(t.value, 0, 0, 0, 0, 0))
            continue
        devices.append(
            DeviceHealth(
                type=t.value,
                total=d["total"],
                online=d["seen"] - d["offline"],
                offline=d["offline"],
                never_seen=d["total"] - d["seen"],
                low_battery=d["low_battery"],
            )
        )
    return Summary(
        now=now,
        day_start=start,
        alarms_today=sum(by_kind.values()),
        alarms_today_by_kind=dict(sorted(by_kind.items())),
        alarms_today_by_severity=by_severity,
        open_alarms_by_severity={r["severity"]: r["n"] for r in open_alarms},
        open_alarms_silenced=sum(r["silenced"] for r in open_alarms),
        open_tickets_by_status={r["status"]: r["n"] for r in open_tickets},
        overdue_tickets=sum(r["overdue"] for r in open_tickets),
        tickets_created_today=created["n"],
        tickets_resolved_today=times["resolved"],
        mtta_s=_round(times["mtta"]),
        mtt_arrive_s=_round(times["mtt_arrive"]),
        mttr_s=_round(times["mttr"]),
        devices=devices,
        low_battery_pct=low_battery_pct,
        active_silences=silences["n"],
    )
