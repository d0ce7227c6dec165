"""Alarm storms: the devices of a building or gateway that go quiet together are one incident.

A building's power cut or a gateway's outage makes hundreds of devices miss their reports at once,
and `rules.offline` raises one `device.offline` per device. Dispatching each would bury the grid
worker under hundreds of tickets for one cause. Instead (Alertmanager's group_wait and inhibition,
over PostgreSQL so several alerts processes agree):

- a new `device.offline` alarm joins an open incident of its gateway or building at once — a
  `device.mass_offline` alarm, or an elevator's `power_loss` fault in its building, which explains
  the silence — and sends nothing of its own (inhibited);
- otherwise, when the offline devices of its gateway (first) or building reach `StormPolicy.threshold`,
  a `device.mass_offline` incident opens with one ticket, and every held alarm of that scope joins it;
- otherwise the alarm is held for `wait_s` (`alarms.held_until`): if the incident forms meanwhile
  it joins it, if the device comes back it never makes a ticket, and if neither, the escalation
  worker dispatches it on its own (`AlertService.release_held`).

Only `device.offline` is ever held or grouped: life-safety kinds never wait. The incident clears by
itself once every device under it is back. A gateway is whatever the registry names in a device's
optional `gateway_id` (an MQTT 3.1.1 message does not tell its subscriber which connection
published it, so the broker connection cannot tell it here).

Why the numbers. Devices that go quiet at the same moment are not found offline at the same moment:
each one's deadline is its own last report plus its allowed interval, so the offline alarms of one
outage arrive spread over one reporting interval — 15 minutes for the meters (measured in the tests:
200 meters of a building, 14 minutes from the first alarm to the last). `wait_s` is therefore one such
interval (900 s): by then every 15-minute device of the outage has been found and the incident formed,
before any of them is dispatched on its own. It delays a genuinely lone device's ticket by 15 minutes,
for a warning-severity kind that already needs 45 minutes to a day of silence to be raised. Devices
with longer intervals (a smoke detector's daily heartbeat) join the incident whenever they are found,
as long as it is open. The threshold is at least 2 devices, at most `min_devices` (5), and otherwise
`share` (half) of the devices of the scope: five devices of a building silent together are not a
coincidence, and in a building of three, two are already most of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.store import Conn, add_ticket_event
from whistle.domain import AlarmKind, SubjectType
from whistle.timeutil import to_datetime

OFFLINE = AlarmKind.DEVICE_OFFLINE.value
INCIDENT = AlarmKind.DEVICE_MASS_OFFLINE.value


@dataclass(frozen=True, slots=True)
class StormPolicy:
    """When offline devices make an incident, and how long a lone one waits to see."""

    wait_s: float = 900.0
    min_devices: int = 5
    share: float = 0.5

    def threshold(self, devices_in_scope: int) -> int:
        """How many devices offline at once make an incident of a scope with `devices_in_scope` devices."""
        return max(2, min(self.min_devices, math.ceil(self.share * devices_in_scope)))


@dataclass(frozen=True, slots=True)
class StormScope:
    """A building or a gateway: what a group of devices shares."""

    type: SubjectType  # BUILDING or GATEWAY
    id: str


@dataclass(frozen=True, slots=True)
class Incident:
    """An open alarm that explains the offline devices of a scope, and its ticket (if dispatched)."""

    alarm_id: str
    ticket_id: str | None
    kind: AlarmKind


async def scopes_of(conn: Conn, device_id: str, building_id: str | None) -> list[StormScope]:
    """The device's gateway (if the registry names one), then its building."""
    cur = await conn.execute("SELECT gateway_id FROM devices WHERE id = %s", (device_id,))
    row = await cur.fetchone()
    scopes = [StormScope(SubjectType.GATEWAY, row[0])] if row and row[0] else []
    if building_id is not None:
        scopes.append(StormScope(SubjectType.BUILDING, building_id))
    return scopes


async def lock_scopes(conn: Conn, scopes: Sequence[StormScope]) -> None:
    """Serialise the storm decisions of one scope for this transaction (gateways before buildings,
    always in that order, so two decisions never wait on each other)."""
    for scope in scopes:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"storm:{scope.type.value}:{scope.id}",))


async def open_incident(conn: Conn, scopes: Sequence[StormScope]) -> Incident | None:
    """An open incident covering one of `scopes`: a device.mass_offline alarm on it, else an elevator
    power loss in the building."""
    for scope in scopes:
        cur = await conn.execute(
            "SELECT a.id, ta.ticket_id FROM alarms a LEFT JOIN ticket_alarms ta ON ta.alarm_id = a.id "
            "WHERE a.kind = %s AND a.subject_type = %s AND a.subject_id = %s AND a.status <> 'cleared' "
            "FOR UPDATE OF a",
            (INCIDENT, scope.type.value, scope.id),
        )
        row = await cur.fetchone()
        if row is not None:
            return Incident(str(row[0]), str(row[1]) if row[1] else None, AlarmKind.DEVICE_MASS_OFFLINE)
    for scope in scopes:
        if scope.type is not SubjectType.BUILDING:
            continue
        cur = await conn.execute(
            "SELECT a.id, ta.ticket_id FROM alarms a LEFT JOIN ticket_alarms ta ON ta.alarm_id = a.id "
            "WHERE a.kind = %s AND a.building_id = %s AND a.status <> 'cleared' "
            "AND a.evidence->>'event' = 'power_loss' ORDER BY a.first_seen LIMIT 1",
            (AlarmKind.ELEVATOR_FAULT.value, scope.id),
        )
        row = await cur.fetchone()
        if row is not None:
            return Incident(str(row[0]), str(row[1]) if row[1] else None, AlarmKind.ELEVATOR_FAULT)
    return None


def _members(scope: StormScope) -> tuple[str, tuple[str, ...]]:
    """SQL (over alarms `a`) selecting the open, unsilenced device.offline alarms of a scope."""
    if scope.type is SubjectType.GATEWAY:
        where = "a.subject_id IN (SELECT id FROM devices WHERE gateway_id = %s)"
    else:
        where = "a.building_id = %s"
    sql = (
        f"a.kind = '{OFFLINE}' AND a.subject_type = 'device' AND a.status <> 'cleared' "
        f"AND a.silence_id IS NULL AND {where}"
    )
    return sql, (scope.id,)


async def count_offline(conn: Conn, scope: StormScope) -> tuple[int, int]:
    """(devices of the scope offline now, devices of the scope in the registry)."""
    members, args = _members(scope)
    cur = await conn.execute(f"SELECT count(DISTINCT a.subject_id) FROM alarms a WHERE {members}", args)
    offline = int((await cur.fetchone() or (0,))[0])
    if scope.type is SubjectType.GATEWAY:
        cur = await conn.execute("SELECT count(*) FROM devices WHERE gateway_id = %s", (scope.id,))
    else:
        cur = await conn.execute(
            "SELECT count(*) FROM devices d LEFT JOIN households h ON h.id = d.household_id "
            "WHERE COALESCE(d.building_id, h.building_id) = %s",
            (scope.id,),
        )
    total = int((await cur.fetchone() or (0,))[0])
    return offline, max(total, offline)


async def join(conn: Conn, incident: Incident, alarm_id: str, *, device_id: str, now: int) -> None:
    """Put an offline alarm under an incident: no hold, no ticket of its own; in the incident's ticket."""
    await conn.execute(
        "UPDATE alarms SET incident_id = %s, held_until = NULL WHERE id = %s", (incident.alarm_id, alarm_id)
    )
    if incident.kind is AlarmKind.DEVICE_MASS_OFFLINE:
        await conn.execute(
            "UPDATE alarms SET count = (SELECT count(*) FROM alarms m WHERE m.incident_id = %s), "
            "evidence = jsonb_set(evidence, '{devices_offline}', to_jsonb((SELECT count(*) FROM alarms m "
            "WHERE m.incident_id = %s AND m.status <> 'cleared'))) WHERE id = %s",
            (incident.alarm_id, incident.alarm_id, incident.alarm_id),
        )
    if incident.ticket_id is None:
        return
    await conn.execute(
        "INSERT INTO ticket_alarms (ticket_id, alarm_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (incident.ticket_id, alarm_id),
    )
    await add_ticket_event(
        conn,
        incident.ticket_id,
        at=now,
        actor="system",
        action="alarm_grouped",
        data={"alarm_id": alarm_id, "kind": OFFLINE, "device_id": device_id, "inhibited_by": incident.kind.value},
    )


async def adopt(conn: Conn, scope: StormScope, incident: Incident, *, now: int) -> list[str]:
    """Put the scope's open offline alarms that have no ticket (held ones) under a new incident. Rows
    another transaction holds (the escalation worker releasing them) are skipped: it will find the
    incident itself once this commits."""
    members, args = _members(scope)
    cur = await conn.execute(
        f"SELECT a.id, a.subject_id FROM alarms a WHERE {members} AND a.incident_id IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM ticket_alarms ta WHERE ta.alarm_id = a.id) ORDER BY a.first_seen, a.id "
        "FOR UPDATE OF a SKIP LOCKED",
        args,
    )
    rows = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
    for alarm_id, device_id in rows:
        await join(conn, incident, alarm_id, device_id=device_id, now=now)
    return [alarm_id for alarm_id, _ in rows]


async def hold(conn: Conn, alarm_id: str, until: int) -> None:
    await conn.execute("UPDATE alarms SET held_until = %s WHERE id = %s", (to_datetime(until), alarm_id))


async def take_due(conn: Conn, now: int, limit: int) -> list[str]:
    """Held alarms whose wait is over, locked for this transaction; their hold is lifted."""
    cur = await conn.execute(
        "SELECT id FROM alarms WHERE held_until <= %s ORDER BY held_until, id LIMIT %s FOR UPDATE SKIP LOCKED",
        (to_datetime(now), limit),
    )
    ids = [str(r[0]) for r in await cur.fetchall()]
    if ids:
        await conn.execute("UPDATE alarms SET held_until = NULL WHERE id = ANY(%s)", (ids,))
    return ids


async def incident_back(conn: Conn, alarm_id: str) -> str | None:
    """After a member cleared: the id of its device.mass_offline incident if no member is offline any more.
    The incident is locked before its members are counted, so of two members clearing at once the
    second one to commit sees the first one cleared."""
    cur = await conn.execute("SELECT incident_id FROM alarms WHERE id = %s", (alarm_id,))
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return None
    cur = await conn.execute(
        "SELECT id FROM alarms WHERE id = %s AND kind = %s AND status <> 'cleared' FOR UPDATE", (row[0], INCIDENT)
    )
    incident = await cur.fetchone()
    if incident is None:
        return None
    cur = await conn.execute(
        "SELECT 1 FROM alarms WHERE incident_id = %s AND status <> 'cleared' LIMIT 1", (incident[0],)
    )
    return None if await cur.fetchone() is not None else str(incident[0])
