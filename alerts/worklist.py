"""What a grid worker's page reads: their open tickets, most urgent first, each with what and where.

A ticket here comes with its place (the building's address, floors and location, the household's unit,
the grid's name, and where each device of its alarms hangs), its alarms' evidence in plain words
(alerts.evidence), and whether its household has contacts to call (read through
`GET /tickets/{id}/contacts`, which logs every read; never sent along here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg.rows import dict_row

from alerts.evidence import explain_all
from alerts.queries import TicketView, list_tickets
from alerts.store import ALARM_COLUMNS, alarm_from_row
from whistle.access import Principal, Scope
from whistle.domain import Alarm, SubjectType, TicketStatus
from whistle.store.db import Database

OPEN = (TicketStatus.DISPATCHED, TicketStatus.ACKNOWLEDGED, TicketStatus.ON_SITE)
MAX_OPEN = 200


@dataclass(frozen=True, slots=True)
class DevicePlace:
    id: str
    type: str
    location: str | None  # where it hangs, in the registry's words ("2F 公共厨房")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a ticket is: building, household, grid, and the devices that raised it."""

    building_id: str | None
    address: str
    floors: int | None
    location: tuple[float, float] | None  # WGS-84 (lon, lat)
    grid_id: str | None
    grid_name: str | None
    household_id: str | None
    unit: str | None
    lone_elder: bool
    has_contacts: bool
    devices: tuple[DevicePlace, ...]


@dataclass(frozen=True, slots=True)
class WorkTicket:
    """A ticket as the worker's page shows it."""

    view: TicketView
    place: Place
    alarms: tuple[Alarm, ...]
    evidence: tuple[str, ...]


def _devices_of(alarms: Iterable[Alarm]) -> set[str]:
    ids: set[str] = set()
    for a in alarms:
        if a.subject_type is SubjectType.DEVICE:
            ids.add(a.subject_id)
        for key in ("detectors", "detectors_in_alarm"):
            value = a.evidence.get(key)
            if isinstance(value, list):
                ids.update(str(d) for d in value)
        trigger = a.evidence.get("trigger")
        if isinstance(trigger, dict) and isinstance(trigger.get("device_id"), str):
            ids.add(trigger["device_id"])
        if isinstance(a.evidence.get("device_id"), str):
            ids.add(a.evidence["device_id"])
    return ids


async def work_tickets(db: Database, views: Sequence[TicketView]) -> list[WorkTicket]:
    """The views with their places, alarms and evidence in words (a few queries for the whole list)."""
    if not views:
        return []
    alarm_ids = [a for v in views for a in v.ticket.alarm_ids]
    buildings = {v.ticket.building_id for v in views if v.ticket.building_id}
    households = {v.ticket.household_id for v in views if v.ticket.household_id}
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur_alarms = await conn.execute(f"SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ANY(%s::uuid[])", (alarm_ids,))
        alarms = {a.id: a for a in (alarm_from_row(r) for r in await cur_alarms.fetchall())}
        await cur.execute(
            "SELECT h.id, h.unit, h.tags, jsonb_array_length(h.contacts) AS contacts, h.building_id "
            "FROM households h WHERE h.id = ANY(%s)",
            (list(households),),
        )
        homes = {r["id"]: r for r in await cur.fetchall()}
        buildings |= {r["building_id"] for r in homes.values()}
        await cur.execute(
            "SELECT b.id, b.address, b.floors, b.lon, b.lat, b.grid_id, g.name AS grid_name "
            "FROM buildings b LEFT JOIN grids g ON g.id = b.grid_id WHERE b.id = ANY(%s)",
            (list(buildings),),
        )
        sites = {r["id"]: r for r in await cur.fetchall()}
        await cur.execute(
            "SELECT id, name FROM grids WHERE id = ANY(%s)", ([v.ticket.grid_id for v in views if v.ticket.grid_id],)
        )
        grid_names = {r["id"]: r["name"] for r in await cur.fetchall()}
        wanted = _devices_of(alarms.values())
        await cur.execute("SELECT id, type, location FROM devices WHERE id = ANY(%s)", (sorted(wanted),))
        devices = {r["id"]: DevicePlace(r["id"], r["type"], r["location"]) for r in await cur.fetchall()}
    out: list[WorkTicket] = []
    for v in views:
        t = v.ticket
        home = homes.get(t.household_id or "")
        site = sites.get(t.building_id or (home["building_id"] if home else "")) or {}
        mine = tuple(alarms[a] for a in t.alarm_ids if a in alarms)
        places = {d.id: d.location for d in devices.values() if d.location}
        located = site.get("lon") is not None and site.get("lat") is not None
        place = Place(
            building_id=site.get("id"),
            address=site.get("address") or "",
            floors=site.get("floors"),
            location=(float(site["lon"]), float(site["lat"])) if located else None,
            grid_id=t.grid_id,
            grid_name=grid_names.get(t.grid_id or "") or site.get("grid_name"),
            household_id=t.household_id,
            unit=home["unit"] if home else None,
            lone_elder=bool(home and "lone_elder" in (home["tags"] or [])),
            has_contacts=bool(home and (home["contacts"] or 0) > 0),
            devices=tuple(sorted((devices[d] for d in _devices_of(mine) if d in devices), key=lambda d: d.id)),
        )
        evidence = explain_all([(a.kind, a.evidence) for a in mine], places)
        out.append(WorkTicket(v, place, mine, tuple(evidence)))
    return out


def urgency(w: WorkTicket) -> tuple[int, int]:
    """Most urgent first: by severity, then the longest waiting."""
    return (w.view.ticket.severity.rank, w.view.ticket.created_at)


async def my_open_tickets(db: Database, user: Principal) -> list[WorkTicket]:
    """The caller's open tickets (assigned to them: dispatched, acknowledged, on site), most urgent first."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT id::text FROM tickets WHERE assignee_id = %s AND status = ANY(%s) ORDER BY created_at LIMIT %s",
            (user.id, [s.value for s in OPEN], MAX_OPEN),
        )
        ids = [r[0] for r in await cur.fetchall()]
    if not ids:
        return []
    views, _ = await list_tickets(db, filters={}, limit=len(ids), cursor=None, ticket_ids=ids, scope=user.scope)
    return sorted(await work_tickets(db, views), key=urgency)


async def work_ticket(db: Database, ticket_id: str, *, scope: Scope | None) -> WorkTicket | None:
    """One ticket with its place and evidence in words, or None (also outside `scope`)."""
    views, _ = await list_tickets(db, filters={}, limit=1, cursor=None, ticket_id=ticket_id, scope=scope)
    found = await work_tickets(db, views)
    return found[0] if found else None
