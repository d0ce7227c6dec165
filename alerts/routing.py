"""Who a ticket goes to: through the registry's grid hierarchy and duty rosters to people (pure choices)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum

from whistle.domain import WorkerRole
from whistle.timeutil import CHINA_TZ


@dataclass(frozen=True, slots=True)
class Candidate:
    worker_id: str
    grid_id: str | None
    role: WorkerRole


# In a micro-grid the grid worker goes first; walking up, the leader of a parent grid.
_PREFERENCE = (WorkerRole.GRID_WORKER, WorkerRole.GRID_LEADER)


def choose_assignee(grid_chain: Sequence[str], workers: Sequence[Candidate]) -> str | None:
    """The first grid worker (then leader) found walking from the micro-grid up its parents,
    else a street-center worker; ties broken by worker id so the choice is stable."""
    for grid_id in grid_chain:
        here = [w for w in workers if w.grid_id == grid_id]
        for role in _PREFERENCE:
            ids = sorted(w.worker_id for w in here if w.role is role)
            if ids:
                return ids[0]
    center = sorted(w.worker_id for w in workers if w.role is WorkerRole.STREET_CENTER)
    return center[0] if center else None


# Duty rosters and the people an incident concerns ---------------------------------------------


class Duty(StrEnum):
    PRIMARY = "primary"
    BACKUP = "backup"


@dataclass(frozen=True, slots=True)
class Shift:
    """A weekly shift of a worker on a grid, in local time (Asia/Shanghai). A shift whose end is
    not after its start runs past midnight; it belongs to the ISO weekday it starts on."""

    worker_id: str
    grid_id: str
    weekday: int  # ISO: 1 = Monday ... 7 = Sunday
    starts: time
    ends: time
    duty: Duty = Duty.PRIMARY

    def covers(self, local: datetime) -> bool:
        """Whether the shift is on at the local wall time `local`."""
        t, wd = local.time().replace(tzinfo=None), local.isoweekday()
        if self.starts < self.ends:
            return wd == self.weekday and self.starts <= t < self.ends
        if wd == self.weekday and t >= self.starts:
            return True
        return wd == self.weekday % 7 + 1 and t < self.ends


def on_duty(shifts: Sequence[Shift], grid_id: str, at_ms: int, duty: Duty = Duty.PRIMARY) -> list[str]:
    """The workers on `duty` for `grid_id` at `at_ms`, by id."""
    local = datetime.fromtimestamp(at_ms / 1000, tz=CHINA_TZ)
    return sorted({s.worker_id for s in shifts if s.grid_id == grid_id and s.duty is duty and s.covers(local)})


class Target(StrEnum):
    """Whom an escalation step notifies, resolved to people when the step fires."""

    ASSIGNEE = "assignee"
    BACKUP = "backup"
    GRID_LEADER = "grid_leader"
    STREET_CENTER = "street_center"
    PROPERTY = "property"
    ELEVATOR_MAINTAINER = "elevator_maintainer"
    CONTACT = "contact"  # the household's emergency contacts (households.contacts)


def contact_id(household_id: str, index: int) -> str:
    """The recipient id of a household's emergency contact (contacts are not workers)."""
    return f"contact:{household_id}:{index}"


@dataclass(frozen=True, slots=True)
class Responders:
    """Who is who for one ticket at one moment: the assignee and the others a step may name."""

    assignee: str | None
    by_target: Mapping[Target, tuple[str, ...]]

    def resolve(self, targets: Sequence[Target]) -> list[tuple[Target, str]]:
        """(target, recipient id) for `targets`, in order, each person once."""
        seen: set[str] = set()
        out: list[tuple[Target, str]] = []
        for target in targets:
            ids = (self.assignee,) if target is Target.ASSIGNEE else self.by_target.get(target, ())
            for rid in ids:
                if rid is not None and rid not in seen:
                    seen.add(rid)
                    out.append((target, rid))
        return out


def _nearest(grid_chain: Sequence[str], workers: Sequence[Candidate], role: WorkerRole) -> tuple[str, ...]:
    """The workers of `role` in the nearest grid of the chain that has any, else those bound to no grid."""
    for grid_id in grid_chain:
        ids = sorted(w.worker_id for w in workers if w.grid_id == grid_id and w.role is role)
        if ids:
            return tuple(ids)
    return tuple(sorted(w.worker_id for w in workers if w.grid_id is None and w.role is role))


def route(
    grid_chain: Sequence[str],
    workers: Sequence[Candidate],
    shifts: Sequence[Shift],
    at_ms: int,
    *,
    household_id: str | None = None,
    contacts: int = 0,
    assignee: str | None = None,
) -> Responders:
    """Everyone a ticket may concern, at `at_ms`.

    The assignee (unless given: an existing ticket keeps its own) is the micro-grid's primary on
    duty, else `choose_assignee` (the grid's workers, then a parent grid's leader, then the street
    center). The backup is the micro-grid's backup on duty, else another of its grid workers. The
    grid leader, property company and elevator maintainer are the nearest up the grid chain.
    """
    micro = grid_chain[0] if grid_chain else None
    if assignee is None:
        duty = on_duty(shifts, micro, at_ms) if micro else []
        assignee = duty[0] if duty else choose_assignee(grid_chain, workers)
    backups: tuple[str, ...] = ()
    if micro is not None:
        backups = tuple(w for w in on_duty(shifts, micro, at_ms, Duty.BACKUP) if w != assignee)
        if not backups:
            others = sorted(
                w.worker_id
                for w in workers
                if w.grid_id == micro and w.role is WorkerRole.GRID_WORKER and w.worker_id != assignee
            )
            backups = tuple(others[:1])
    leaders = tuple(w for w in _nearest(grid_chain, workers, WorkerRole.GRID_LEADER) if w != assignee)
    center = tuple(sorted(w.worker_id for w in workers if w.role is WorkerRole.STREET_CENTER))
    return Responders(
        assignee=assignee,
        by_target={
            Target.BACKUP: backups,
            Target.GRID_LEADER: leaders[:1],
            Target.STREET_CENTER: center,
            Target.PROPERTY: _nearest(grid_chain, workers, WorkerRole.PROPERTY),
            Target.ELEVATOR_MAINTAINER: _nearest(grid_chain, workers, WorkerRole.ELEVATOR_MAINTAINER),
            Target.CONTACT: tuple(contact_id(household_id, i) for i in range(contacts)) if household_id else (),
        },
    )
