"""Escalation as data: a policy is a table of steps, frozen into the ticket when it is created.

Each step is due `after_s` seconds after the ticket's escalation base (its creation, or its last
reassignment) and names whom to notify. A step with `unless` is skipped once the ticket has
reached that status: the "acknowledge within 3 minutes" step never fires after an ack, the "on
site within 15 minutes" step never fires after arrival. A resolved or closed ticket, or one whose
alarms are all cleared, has nothing more due. `next_step` is pure; the worker that runs it records
each fired step with its notifications in one transaction, so a restart never repeats one.

The defaults follow DOMAIN.md: critical — the assignee at once (and the kind's extra recipients),
the backup and the grid leader if nobody acknowledges within 3 min, the street center if nobody
is on site within 15 min. A lone elder's inactivity goes to the household's emergency contact
first, and to the grid worker if nobody acknowledges within 5 min (Jing'an's practice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alerts.routing import Target
from whistle.domain import AlarmKind, Severity, TicketStatus

_STATUS_RANK = {
    TicketStatus.DISPATCHED: 0,
    TicketStatus.ACKNOWLEDGED: 1,
    TicketStatus.ON_SITE: 2,
    TicketStatus.RESOLVED: 3,
    TicketStatus.CLOSED: 4,
}


def reached(status: TicketStatus, milestone: TicketStatus) -> bool:
    """Whether a ticket in `status` has got at least as far as `milestone`."""
    return _STATUS_RANK[status] >= _STATUS_RANK[milestone]


@dataclass(frozen=True, slots=True)
class EscalationStep:
    after_s: int
    notify: tuple[Target, ...]
    unless: TicketStatus | None = None  # skipped once the ticket has reached this status
    level: int = 0  # the ticket's escalation_level once this step fired

    def to_json(self) -> dict[str, Any]:
        return {
            "after_s": self.after_s,
            "notify": [t.value for t in self.notify],
            "unless": self.unless.value if self.unless else None,
            "level": self.level,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EscalationStep:
        unless = data.get("unless")
        return cls(
            after_s=int(data["after_s"]),
            notify=tuple(Target(t) for t in data["notify"]),
            unless=TicketStatus(unless) if unless else None,
            level=int(data.get("level", 0)),
        )


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    name: str
    steps: tuple[EscalationStep, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [s.to_json() for s in self.steps]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EscalationPolicy:
        return cls(name=str(data.get("name", "")), steps=tuple(EscalationStep.from_json(s) for s in data["steps"]))


ACK, ON_SITE = TicketStatus.ACKNOWLEDGED, TicketStatus.ON_SITE
T = Target

DEFAULT_POLICIES: Mapping[Severity, EscalationPolicy] = {
    Severity.CRITICAL: EscalationPolicy(
        "critical",
        (
            EscalationStep(0, (T.ASSIGNEE,)),
            EscalationStep(180, (T.BACKUP, T.GRID_LEADER), unless=ACK, level=1),
            EscalationStep(900, (T.STREET_CENTER,), unless=ON_SITE, level=2),
        ),
    ),
    Severity.MAJOR: EscalationPolicy(
        "major",
        (
            EscalationStep(0, (T.ASSIGNEE,)),
            EscalationStep(900, (T.BACKUP, T.GRID_LEADER), unless=ACK, level=1),
            EscalationStep(3600, (T.STREET_CENTER,), unless=ON_SITE, level=2),
        ),
    ),
    Severity.MINOR: EscalationPolicy(
        "minor",
        (
            EscalationStep(0, (T.ASSIGNEE,)),
            EscalationStep(4 * 3600, (T.GRID_LEADER,), unless=ACK, level=1),
        ),
    ),
    Severity.WARNING: EscalationPolicy("warning", (EscalationStep(0, (T.ASSIGNEE,)),)),
}

# Extra recipients of the first step, by kind (CONTRACT.md §3 kinds).
KIND_EXTRAS: Mapping[AlarmKind, tuple[Target, ...]] = {
    AlarmKind.ELEVATOR_TRAPPED: (T.ELEVATOR_MAINTAINER,),
    AlarmKind.SMOKE_FIRE: (T.PROPERTY, T.STREET_CENTER),
}

CONTACT_FIRST_KINDS = frozenset({AlarmKind.LONE_ELDER_INACTIVE})
CONTACT_GRACE_S = 300  # the emergency contact's time to answer before the grid worker is called


def policy_for(
    kind: AlarmKind,
    severity: Severity,
    *,
    has_contact: bool = False,
    policies: Mapping[Severity, EscalationPolicy] = DEFAULT_POLICIES,
) -> EscalationPolicy:
    """The policy a new ticket freezes: its severity's table, with the kind's extra recipients."""
    base = policies[severity]
    first, rest = base.steps[0], base.steps[1:]
    first = replace(first, notify=first.notify + KIND_EXTRAS.get(kind, ()))
    if kind in CONTACT_FIRST_KINDS and has_contact:
        grace = CONTACT_GRACE_S
        steps = (
            EscalationStep(0, (T.CONTACT,)),
            replace(first, after_s=first.after_s + grace, unless=ACK),
            *(replace(s, after_s=s.after_s + grace) for s in rest),
        )
        return EscalationPolicy(f"{base.name}+contact_first", steps)
    return EscalationPolicy(base.name, (first, *rest))


@dataclass(frozen=True, slots=True)
class EscalationState:
    """What `next_step` needs to know about a ticket."""

    status: TicketStatus
    base_at: int  # ms: steps are due `after_s` after this
    next_index: int  # the first step not yet fired or skipped
    alarms_open: bool = True


@dataclass(frozen=True, slots=True)
class StepResult:
    """The step to fire now (if any), the index after it, and when to look again (None: never)."""

    fire: EscalationStep | None
    index: int | None  # the fired step's index
    next_index: int
    due_at: int | None


def _pending(steps: Sequence[EscalationStep], state: EscalationState, start: int) -> int:
    """The first step at or after `start` that is not skipped by the ticket's status."""
    i = start
    while i < len(steps) and steps[i].unless is not None and reached(state.status, steps[i].unless):  # type: ignore[arg-type]
        i += 1
    return i


def next_step(policy: EscalationPolicy, state: EscalationState, now: int) -> StepResult:
    """The step due at `now`, if any; call again after firing it (several may be overdue)."""
    steps = policy.steps
    if reached(state.status, TicketStatus.RESOLVED) or not state.alarms_open:
        return StepResult(None, None, state.next_index, None)
    i = _pending(steps, state, state.next_index)
    if i >= len(steps):
        return StepResult(None, None, i, None)
    due = state.base_at + steps[i].after_s * 1000
    if due > now:
        return StepResult(None, None, i, due)
    j = _pending(steps, state, i + 1)
    following = state.base_at + steps[j].after_s * 1000 if j < len(steps) else None
    return StepResult(steps[i], i, j, following)


def cancel_on(step: EscalationStep) -> TicketStatus:
    """The ticket status that makes a step's unsent notifications moot (an ack, unless it is arrival)."""
    return step.unless or TicketStatus.ACKNOWLEDGED
