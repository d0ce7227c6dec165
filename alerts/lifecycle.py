"""What a detection does to the alarm of its (kind, subject): a pure decision, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from whistle.domain import Alarm, AlarmKind, Detection, DetectionAction, Severity


class Change(StrEnum):
    OPEN = "open"  # no open alarm: open one (and a ticket)
    UPDATE = "update"  # an open alarm: count, last seen, evidence, maybe a higher severity
    CLEAR = "clear"  # the rule says the condition is over
    IGNORE = "ignore"  # a clear for an alarm that is not open
    REOPEN = "reopen"  # raised again soon after its rule cleared it: the same alarm, its ticket goes on


# The household and device-health kinds, whose rules may clear and raise again while the flat or the device
# settles (two meters catching up with each other, a charger's taper, a flaky link): a raise soon after a
# clear is the same worry and reopens that alarm. Life safety is never held back: every raise of a fire or a
# trapped passenger after a clear is dispatched at once, as a new alarm.
REOPENABLE = frozenset(
    {
        AlarmKind.LONE_ELDER_INACTIVE,
        AlarmKind.WATER_CONTINUOUS_FLOW,
        AlarmKind.GROUP_RENTAL_SUSPECTED,
        AlarmKind.EBIKE_INDOOR_CHARGING,
        AlarmKind.DEVICE_OFFLINE,
    }
)
LIFE_SAFETY = frozenset({AlarmKind.SMOKE_FIRE, AlarmKind.ELEVATOR_TRAPPED})


@dataclass(frozen=True, slots=True)
class ReopenPolicy:
    """Which kinds reopen, and within how long (event time) of their rule's clear."""

    window_s: float = 6 * 3600.0
    kinds: frozenset[AlarmKind] = REOPENABLE

    def applies(self, kind: AlarmKind) -> bool:
        return self.window_s > 0 and kind in self.kinds and kind not in LIFE_SAFETY


@dataclass(frozen=True, slots=True)
class Cleared:
    """The last cleared alarm of a kind and subject, as far as reopening it is concerned."""

    alarm: Alarm
    cleared_seen: int | None  # event time of the rule's clear; None: cleared by a person, a ticket, by hand
    ticket_open: bool | None  # its ticket is still being worked on; None: it has none (silenced, held)
    grouped: bool = False  # it was under an incident (a storm): that incident decides


@dataclass(frozen=True, slots=True)
class Decision:
    change: Change
    severity: Severity
    escalated: bool = False


def reopens(d: Detection, cleared: Cleared | None, policy: ReopenPolicy) -> bool:
    """Whether a raise reopens the alarm its rule cleared: a reopening kind, cleared by its rule within the
    window (either side: a late raise of before the clear too), and its ticket (if any) not yet resolved —
    a worker's resolution is not undone by a rule; what follows it is a new alarm."""
    if d.action is not DetectionAction.RAISE or cleared is None or not policy.applies(d.kind):
        return False
    if cleared.cleared_seen is None or cleared.ticket_open is False or cleared.grouped:
        return False
    return abs(d.ts - cleared.cleared_seen) <= policy.window_s * 1000


def decide(
    d: Detection, existing: Alarm | None, cleared: Cleared | None = None, policy: ReopenPolicy | None = None
) -> Decision:
    """The change a detection makes, given the open alarm of its kind and subject (if any) and, for a raise
    when none is open, the last one cleared."""
    if d.action is DetectionAction.CLEAR:
        if existing is None:
            return Decision(Change.IGNORE, d.severity)
        return Decision(Change.CLEAR, existing.severity)
    if existing is None:
        if cleared is not None and reopens(d, cleared, policy or ReopenPolicy()):
            before = cleared.alarm.severity
            severity = d.severity if d.severity.rank < before.rank else before
            return Decision(Change.REOPEN, severity, escalated=severity is not before)
        return Decision(Change.OPEN, d.severity)
    severity = d.severity if d.severity.rank < existing.severity.rank else existing.severity
    return Decision(Change.UPDATE, severity, escalated=severity is not existing.severity)


# Kinds that are one incident when they meet on the same place: they share one ticket.
RELATED: tuple[tuple[frozenset[AlarmKind], str], ...] = (
    # an elder who draws no water and a tap left running are one worry about one flat
    (frozenset({AlarmKind.LONE_ELDER_INACTIVE, AlarmKind.WATER_CONTINUOUS_FLOW}), "household_id"),
    # passengers trapped and a fault of the building's elevators
    (frozenset({AlarmKind.ELEVATOR_TRAPPED, AlarmKind.ELEVATOR_FAULT}), "building_id"),
)


@dataclass(frozen=True, slots=True)
class Group:
    kinds: frozenset[AlarmKind]
    column: str  # household_id or building_id
    value: str


def group_of(kind: AlarmKind, household_id: str | None, building_id: str | None) -> Group | None:
    """The incident group a new alarm joins, if its kind has related kinds and its place is known."""
    for kinds, column in RELATED:
        value = household_id if column == "household_id" else building_id
        if kind in kinds and value is not None:
            return Group(kinds, column, value)
    return None
