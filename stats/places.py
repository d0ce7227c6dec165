"""The street on one map (一张图): grids and buildings with their open alarms, who is on duty, what is silenced;
a building's devices, alarms and tickets for the map's click; the latest alarms with their place for the ticker.

Open alarms are few at any moment (the partial indexes on `status <> 'cleared'` find them), the registry
is small (a reference street: 59 grids, 658 buildings), so the map is a handful of indexed queries and a
tree walk here, whatever the size of the alarm history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from alerts import store
from alerts.routing import Candidate, Duty, Shift, route
from stats.geo import Crs, LonLat, bbox, convert, ring
from whistle.domain import Severity, WorkerRole
from whistle.store.db import Database
from whistle.timeutil import from_datetime

_MAX_DEPTH = 16  # grids nest a few levels; a cycle in parent_id never loops


@dataclass(frozen=True, slots=True)
class SeverityCounts:
    """Open alarms by severity."""

    critical: int = 0
    major: int = 0
    minor: int = 0
    warning: int = 0

    @property
    def total(self) -> int:
        return self.critical + self.major + self.minor + self.warning

    @property
    def worst(self) -> Severity | None:
        """The most urgent severity with an open alarm, or None."""
        return next((s for s in Severity if getattr(self, s.value)), None)

    def plus(self, severity: str, n: int) -> SeverityCounts:
        return replace(self, **{severity: getattr(self, severity) + n})

    def as_dict(self) -> dict[str, int]:
        return {s.value: getattr(self, s.value) for s in Severity}


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class GridArea:
    """A grid as the map draws it; its counts cover its whole subtree."""

    id: str
    name: str
    parent_id: str | None
    level: int  # 0: a top-level (comprehensive) grid
    leaf: bool
    ring: list[LonLat] | None
    open_alarms: SeverityCounts
    open_tickets: int
    on_duty: Person | None
    silenced: bool


@dataclass(frozen=True, slots=True)
class BuildingSpot:
    id: str
    grid_id: str
    address: str
    floors: int | None
    point: LonLat | None
    open_alarms: SeverityCounts
    open_tickets: int
    silenced: bool  # a silence over the building or one of its grids
    silenced_devices: int  # silences over single devices in it


@dataclass(frozen=True, slots=True)
class ActiveSilence:
    """A silence or maintenance window in force, with the name of what it covers."""

    id: int
    scope_type: str
    scope_id: str
    place: str
    kinds: list[str] | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    building_id: str | None  # the building it lies in (a device's, a building's own)
    grid_id: str | None  # the grid it lies in (a grid's own)


@dataclass(frozen=True, slots=True)
class StreetMap:
    streets: list[str]
    crs: Crs
    grids: list[GridArea]
    buildings: list[BuildingSpot]
    silences: list[ActiveSilence]
    bbox: tuple[float, float, float, float] | None


@dataclass(frozen=True, slots=True)
class _Registry:
    parents: dict[str, str | None]  # grid -> its parent

    def chain(self, grid_id: str) -> list[str]:
        """The grid and its ancestors, nearest first."""
        out: list[str] = []
        g: str | None = grid_id
        while g is not None and g in self.parents and g not in out and len(out) < _MAX_DEPTH:
            out.append(g)
            g = self.parents[g]
        return out


def _in_scope(grids: Sequence[str] | None, column: str) -> str:
    return "" if grids is None else f" AND {column} = ANY(%(grids)s)"


async def street_map(
    db: Database, *, now: datetime, crs: Crs = Crs.WGS84, grids: Sequence[str] | None = None
) -> StreetMap:
    """Every grid and building in scope, with open alarms (by severity, subtree totals), open tickets,
    the worker on duty and whether a silence covers it; and the silences in force."""
    args = {"grids": list(grids or ()), "now": now}
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT name FROM streets ORDER BY id")
        streets = [r["name"] for r in await cur.fetchall()]
        await cur.execute("SELECT id, name, parent_id, polygon FROM grids ORDER BY id")
        all_grids = {r["id"]: r for r in await cur.fetchall()}
        await cur.execute(
            "SELECT id, grid_id, address, lon, lat, floors FROM buildings WHERE true"
            + _in_scope(grids, "grid_id")
            + " ORDER BY id",
            args,
        )
        buildings = await cur.fetchall()
        await cur.execute(
            "SELECT grid_id, building_id, severity, count(*) AS n FROM alarms WHERE status <> 'cleared'"
            + _in_scope(grids, "grid_id")
            + " GROUP BY grid_id, building_id, severity",
            args,
        )
        alarms = await cur.fetchall()
        await cur.execute(
            "SELECT grid_id, building_id, count(*) AS n FROM tickets "
            "WHERE status IN ('dispatched', 'acknowledged', 'on_site')"
            + _in_scope(grids, "grid_id")
            + " GROUP BY grid_id, building_id",
            args,
        )
        tickets = await cur.fetchall()
        await cur.execute("SELECT id, name, grid_id, role FROM workers ORDER BY id")
        workers = await cur.fetchall()
        await cur.execute("SELECT worker_id, grid_id, weekday, starts, ends, duty FROM duty_shifts")
        shifts = [
            Shift(r["worker_id"], r["grid_id"], r["weekday"], r["starts"], r["ends"], Duty(r["duty"]))
            for r in await cur.fetchall()
        ]
        silences = await _active_silences(cur, now)

    reg = _Registry({g: r["parent_id"] for g, r in all_grids.items()})
    visible = set(all_grids) if grids is None else set(grids) & set(all_grids)
    grid_alarms: dict[str, SeverityCounts] = {}
    building_alarms: dict[str, SeverityCounts] = {}
    for r in alarms:
        if r["building_id"] is not None:
            building_alarms[r["building_id"]] = building_alarms.get(r["building_id"], SeverityCounts()).plus(
                r["severity"], r["n"]
            )
        for g in reg.chain(r["grid_id"]) if r["grid_id"] else ():
            grid_alarms[g] = grid_alarms.get(g, SeverityCounts()).plus(r["severity"], r["n"])
    grid_tickets: dict[str, int] = {}
    building_tickets: dict[str, int] = {}
    for r in tickets:
        if r["building_id"] is not None:
            building_tickets[r["building_id"]] = building_tickets.get(r["building_id"], 0) + r["n"]
        for g in reg.chain(r["grid_id"]) if r["grid_id"] else ():
            grid_tickets[g] = grid_tickets.get(g, 0) + r["n"]

    names = {w["id"]: w["name"] for w in workers}
    # whom routing could choose for a grid: its chain's workers, those bound to no grid, the street center
    by_grid: dict[str | None, list[Candidate]] = {}
    anywhere: list[Candidate] = []
    for w in workers:
        c = Candidate(w["id"], w["grid_id"], WorkerRole(w["role"]))
        if c.grid_id is None or c.role is WorkerRole.STREET_CENTER:
            anywhere.append(c)
        else:
            by_grid.setdefault(c.grid_id, []).append(c)
    at = from_datetime(now)
    silenced_grids = {s.scope_id for s in silences if s.scope_type == "grid"}
    silenced_buildings = {s.scope_id for s in silences if s.scope_type == "building"}
    silenced_devices: dict[str, int] = {}
    for s in silences:
        if s.scope_type == "device" and s.building_id:
            silenced_devices[s.building_id] = silenced_devices.get(s.building_id, 0) + 1
    has_children = {p for p in reg.parents.values() if p is not None}
    areas: list[GridArea] = []
    for gid in sorted(visible):
        row = all_grids[gid]
        chain = reg.chain(gid)
        candidates = [c for g in chain for c in by_grid.get(g, ())] + anywhere
        duty = route(chain, candidates, [x for x in shifts if x.grid_id == gid], at).assignee
        polygon = row["polygon"]
        areas.append(
            GridArea(
                id=gid,
                name=row["name"],
                parent_id=row["parent_id"],
                level=len(chain) - 1,
                leaf=gid not in has_children,
                ring=ring(polygon, crs) if isinstance(polygon, list) else None,
                open_alarms=grid_alarms.get(gid, SeverityCounts()),
                open_tickets=grid_tickets.get(gid, 0),
                on_duty=Person(duty, names.get(duty, duty)) if duty else None,
                silenced=any(g in silenced_grids for g in chain),
            )
        )
    spots = [
        BuildingSpot(
            id=b["id"],
            grid_id=b["grid_id"],
            address=b["address"],
            floors=b["floors"],
            point=convert((b["lon"], b["lat"]), crs) if b["lon"] is not None and b["lat"] is not None else None,
            open_alarms=building_alarms.get(b["id"], SeverityCounts()),
            open_tickets=building_tickets.get(b["id"], 0),
            silenced=b["id"] in silenced_buildings or any(g in silenced_grids for g in reg.chain(b["grid_id"])),
            silenced_devices=silenced_devices.get(b["id"], 0),
        )
        for b in buildings
    ]
    points = [p for a in areas for p in a.ring or ()] + [s.point for s in spots if s.point]
    shown = [s for s in silences if _silence_visible(s, visible, reg, grids is not None)]
    return StreetMap(streets, crs, areas, spots, shown, bbox(points))


def _silence_visible(s: ActiveSilence, visible: set[str], reg: _Registry, scoped: bool) -> bool:
    """Whether a silence concerns the grids in scope: it lies in one, or covers one from a parent grid."""
    if not scoped:
        return True
    if s.grid_id is None:
        return False
    return s.grid_id in visible or (s.scope_type == "grid" and any(s.grid_id in reg.chain(g) for g in visible))


async def _active_silences(cur: Any, now: datetime) -> list[ActiveSilence]:
    await cur.execute(
        "SELECT s.id, s.scope_type, s.scope_id, s.kinds, s.starts_at, s.ends_at, s.reason, s.created_by, "
        "COALESCE(g.name, b.address, db.address || ' ' || COALESCE(d.location, d.id), s.scope_id) AS place, "
        "COALESCE(b.id, db.id) AS building_id, COALESCE(g.id, b.grid_id, db.grid_id) AS grid_id "
        "FROM silences s "
        "LEFT JOIN grids g ON s.scope_type = 'grid' AND g.id = s.scope_id "
        "LEFT JOIN buildings b ON s.scope_type = 'building' AND b.id = s.scope_id "
        "LEFT JOIN devices d ON s.scope_type = 'device' AND d.id = s.scope_id "
        "LEFT JOIN households h ON h.id = d.household_id "
        "LEFT JOIN buildings db ON db.id = COALESCE(d.building_id, h.building_id) "
        "WHERE s.starts_at <= %(now)s AND s.ends_at > %(now)s ORDER BY s.ends_at, s.id",
        {"now": now},
    )
    return [ActiveSilence(**r) for r in await cur.fetchall()]


# The ticker and a building's detail ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmPlace:
    """An alarm with where it is (grid name, address, unit) and the ticket that handles it."""

    id: str
    kind: str
    severity: str
    status: str
    subject_type: str
    subject_id: str
    grid_id: str | None
    grid_name: str | None
    building_id: str | None
    address: str | None
    unit: str | None
    detected_at: datetime  # wall time: the age the screen shows
    first_seen: datetime  # event time
    last_seen: datetime
    count: int
    silenced: bool
    ticket_id: str | None
    ticket_status: str | None
    assignee_id: str | None
    assignee_name: str | None


_ALARM_PLACE = (
    "SELECT a.id::text AS id, a.kind, a.severity, a.status, a.subject_type, a.subject_id, a.grid_id, "
    "g.name AS grid_name, a.building_id, b.address, h.unit, a.detected_at, a.first_seen, a.last_seen, a.count, "
    "a.silence_id IS NOT NULL AS silenced, t.id::text AS ticket_id, t.status AS ticket_status, t.assignee_id, "
    "w.name AS assignee_name "
    "FROM alarms a LEFT JOIN grids g ON g.id = a.grid_id LEFT JOIN buildings b ON b.id = a.building_id "
    "LEFT JOIN households h ON h.id = a.household_id LEFT JOIN ticket_alarms ta ON ta.alarm_id = a.id "
    "LEFT JOIN tickets t ON t.id = ta.ticket_id LEFT JOIN workers w ON w.id = t.assignee_id"
)


async def recent_alarms(
    db: Database, *, limit: int, open_only: bool = False, grids: Sequence[str] | None = None
) -> list[AlarmPlace]:
    """The latest alarms by detection (wall) time, newest first, each with its place and ticket."""
    where = " WHERE a.status <> 'cleared'" if open_only else " WHERE true"
    sql = f"{_ALARM_PLACE}{where}{_in_scope(grids, 'a.grid_id')} ORDER BY a.detected_at DESC, a.id DESC LIMIT %(limit)s"
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, {"limit": limit, "grids": list(grids or ())})
        return [AlarmPlace(**r) for r in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device of a building as the map's click shows it."""

    id: str
    type: str
    household_id: str | None
    unit: str | None
    location: str | None
    last_seen: datetime | None
    online: bool | None  # None: never heard from
    battery_pct: float | None
    offline_alarm: bool  # an open device.offline alarm


@dataclass(frozen=True, slots=True)
class TicketBrief:
    id: str
    kind: str
    severity: str
    status: str
    assignee_id: str | None
    assignee_name: str | None
    escalation_level: int
    created_at: datetime
    acknowledged_at: datetime | None
    arrived_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class BuildingDetail:
    id: str
    address: str
    grid_id: str
    grid_name: str | None
    floors: int | None
    location: LonLat | None  # WGS-84, as registered
    households: int
    devices: list[DeviceStatus]
    open_alarms: list[AlarmPlace]
    tickets: list[TicketBrief]  # every open one, then the latest others
    silences: list[ActiveSilence] = field(default_factory=list)


async def building_detail(
    db: Database, building_id: str, *, now: datetime, recent: int = 20, grids: Sequence[str] | None = None
) -> BuildingDetail | None:
    """A building's devices with their state, its open alarms and its tickets; None if unknown or out of scope."""
    args: dict[str, Any] = {"b": building_id, "grids": list(grids or ()), "recent": recent}
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT b.id, b.address, b.grid_id, g.name AS grid_name, b.floors, b.lon, b.lat, "
            "(SELECT count(*) FROM households h WHERE h.building_id = b.id) AS households "
            "FROM buildings b LEFT JOIN grids g ON g.id = b.grid_id WHERE b.id = %(b)s" + _in_scope(grids, "b.grid_id"),
            args,
        )
        b = await cur.fetchone()
        if b is None:
            return None
        await cur.execute(
            "WITH ds AS (SELECT d.*, NULL::text AS unit FROM devices d WHERE d.building_id = %(b)s "
            "UNION ALL SELECT d.*, h.unit FROM households h JOIN devices d ON d.household_id = h.id "
            "WHERE h.building_id = %(b)s) "
            "SELECT ds.id, ds.type, ds.household_id, ds.unit, ds.location, s.last_seen, s.online, s.battery_pct, "
            "EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'device.offline' AND a.subject_type = 'device' "
            "AND a.subject_id = ds.id AND a.status <> 'cleared') AS offline_alarm "
            "FROM ds LEFT JOIN device_state s ON s.device_id = ds.id ORDER BY ds.type, ds.unit NULLS FIRST, ds.id",
            args,
        )
        devices = [DeviceStatus(**r) for r in await cur.fetchall()]
        await cur.execute(
            f"{_ALARM_PLACE} WHERE a.building_id = %(b)s AND a.status <> 'cleared' "
            "ORDER BY a.detected_at DESC, a.id DESC",
            args,
        )
        open_alarms = [AlarmPlace(**r) for r in await cur.fetchall()]
        await cur.execute(
            "(SELECT t.id::text AS id, t.kind, t.severity, t.status, t.assignee_id, w.name AS assignee_name, "
            "t.escalation_level, t.created_at, t.acknowledged_at, t.arrived_at, t.resolved_at, t.outcome "
            "FROM tickets t LEFT JOIN workers w ON w.id = t.assignee_id WHERE t.building_id = %(b)s "
            "AND t.status IN ('dispatched', 'acknowledged', 'on_site') ORDER BY t.created_at DESC LIMIT 200) "
            "UNION ALL "
            "(SELECT t.id::text, t.kind, t.severity, t.status, t.assignee_id, w.name, t.escalation_level, "
            "t.created_at, t.acknowledged_at, t.arrived_at, t.resolved_at, t.outcome "
            "FROM tickets t LEFT JOIN workers w ON w.id = t.assignee_id WHERE t.building_id = %(b)s "
            "AND t.status NOT IN ('dispatched', 'acknowledged', 'on_site') ORDER BY t.created_at DESC "
            "LIMIT %(recent)s)",
            args,
        )
        tickets = [TicketBrief(**r) for r in await cur.fetchall()]
        await cur.execute(
            "WITH RECURSIVE up(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM grids WHERE id = %(g)s"
            " UNION ALL SELECT g.id, g.parent_id, up.depth + 1 FROM grids g JOIN up ON g.id = up.parent_id"
            " WHERE up.depth < 16) SELECT id FROM up",
            {"g": b["grid_id"]},
        )
        chain = {r["id"] for r in await cur.fetchall()}
        silences = [
            s
            for s in await _active_silences(cur, now)
            if s.building_id == building_id or (s.scope_type == "grid" and s.scope_id in chain)
        ]
    return BuildingDetail(
        id=b["id"],
        address=b["address"],
        grid_id=b["grid_id"],
        grid_name=b["grid_name"],
        floors=b["floors"],
        location=(b["lon"], b["lat"]) if b["lon"] is not None and b["lat"] is not None else None,
        households=b["households"],
        devices=devices,
        open_alarms=open_alarms,
        tickets=tickets,
        silences=silences,
    )


async def place_of(db: Database, *, building_id: str | None, household_id: str | None) -> str:
    """A ticket's or alarm's place in words: the building's address and the household's unit."""
    async with db.connection() as conn:
        return await store.place_of(conn, building_id, household_id)
