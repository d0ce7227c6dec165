"""The end of a registry entry's working life, on the alerts side: a device retired (its open alarms
cleared, with the reason) and a worker offboarded (their open tickets routed to someone else).

What retiring takes away at once (a device's broker account; a worker's tokens, sessions, password and
shifts) is done in the kernel (`whistle.registry.retire_consequences`) in the same transaction that
retires the entry; what follows here goes through `AlertService`, so every ticket notes who and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from alerts.service import OPEN_STATUSES, AlertService, TicketError
from whistle import audit
from whistle.errors import NotFound, ServiceError
from whistle.registry import retire_consequences


@dataclass(frozen=True, slots=True)
class RetiredDevice:
    device_id: str
    alarms_cleared: int


@dataclass(frozen=True, slots=True)
class OffboardedWorker:
    worker_id: str
    tokens_revoked: int
    reassigned: list[str] = field(default_factory=list)
    unassigned: list[str] = field(default_factory=list)  # open tickets nobody could be routed to (reassign by hand)


async def _device_alarms(service: AlertService, device_ids: Sequence[str]) -> list[str]:
    async with service.db.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM alarms WHERE subject_type = 'device' AND subject_id = ANY(%s) AND status <> 'cleared'",
            (list(device_ids),),
        )
        return [str(r[0]) for r in await cur.fetchall()]


async def retire_device(service: AlertService, device_id: str, *, actor: str, reason: str) -> RetiredDevice:
    """Retire a device: it no longer counts (its messages become dead letters), its broker account is
    revoked, and its open alarms are cleared with the reason."""
    async with service.db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE devices SET retired_at = now(), updated_at = now() WHERE id = %s AND retired_at IS NULL "
            "RETURNING id",
            (device_id,),
        )
        if await cur.fetchone() is None:
            raise NotFound(f"device {device_id} not found (or retired already)")
        await retire_consequences(conn, devices=[device_id], workers=[])
        await audit.record(
            conn,
            actor=actor,
            action="device.retire",
            target_type="device",
            target_id=device_id,
            data={"reason": reason},
        )
        await conn.execute("NOTIFY whistle_registry")
    cleared = await service.clear_alarms(
        await _device_alarms(service, [device_id]), actor=actor, reason=f"device retired: {reason}"
    )
    return RetiredDevice(device_id, cleared)


async def _reassign_open_tickets(
    service: AlertService, worker_id: str, *, actor: str, note: str
) -> tuple[list[str], list[str]]:
    async with service.db.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM tickets WHERE assignee_id = %s AND status = ANY(%s) ORDER BY created_at",
            (worker_id, [s.value for s in OPEN_STATUSES]),
        )
        open_tickets = [str(r[0]) for r in await cur.fetchall()]
    reassigned, unassigned = [], []
    for ticket_id in open_tickets:
        try:
            await service.reassign(ticket_id, actor=actor, note=note)
            reassigned.append(ticket_id)
        except TicketError:
            unassigned.append(ticket_id)
    return reassigned, unassigned


async def offboard_worker(service: AlertService, worker_id: str, *, actor: str, reason: str) -> OffboardedWorker:
    """Offboard a registry worker: no more sign-in (tokens, sessions and password revoked), off the rosters,
    no more tickets routed to them, and their open tickets routed to whoever the rules now choose."""
    async with service.db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE workers SET retired_at = now(), updated_at = now() WHERE id = %s AND retired_at IS NULL "
            "RETURNING id",
            (worker_id,),
        )
        if await cur.fetchone() is None:
            raise NotFound(f"worker {worker_id} not found (or offboarded already)")
        cur = await conn.execute(
            "SELECT count(*) FROM api_tokens WHERE user_id = %s AND revoked_at IS NULL", (worker_id,)
        )
        row = await cur.fetchone()
        await retire_consequences(conn, devices=[], workers=[worker_id])
        await audit.record(
            conn,
            actor=actor,
            action="worker.offboard",
            target_type="worker",
            target_id=worker_id,
            data={"reason": reason},
        )
        await conn.execute("NOTIFY whistle_registry")
    reassigned, unassigned = await _reassign_open_tickets(
        service, worker_id, actor=actor, note=f"{worker_id} offboarded: {reason}"
    )
    return OffboardedWorker(worker_id, int(row[0]) if row else 0, reassigned, unassigned)


async def follow_up_retirements(
    service: AlertService, retired: Mapping[str, Sequence[str]], *, actor: str
) -> dict[str, int]:
    """After an import in mode `replace`: clear the retired devices' alarms, route the retired workers' tickets."""
    done = {"alarms_cleared": 0, "tickets_reassigned": 0, "tickets_unassigned": 0}
    devices = list(retired.get("devices", ()))
    if devices:
        alarms = await _device_alarms(service, devices)
        done["alarms_cleared"] = await service.clear_alarms(alarms, actor=actor, reason="device retired by import")
    for worker_id in retired.get("workers", ()):
        try:
            moved, stuck = await _reassign_open_tickets(
                service, worker_id, actor=actor, note=f"{worker_id} retired by import"
            )
        except ServiceError:
            continue
        done["tickets_reassigned"] += len(moved)
        done["tickets_unassigned"] += len(stuck)
    return done
