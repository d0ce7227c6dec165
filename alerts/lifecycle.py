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


@dataclass(frozen=True, slots=True)
class Decision:
    change: Change
    severity: Severity
    escalated: bool = False


def decide(d: Detection, existing: Alarm | None) -> Decision:
    """The change a detection makes, given the open alarm of its kind and subject (if any)."""
    if d.action is DetectionAction.CLEAR:
        if existing is None:
            return Decision(Change.IGNORE, d.severity)
        return Decision(Change.CLEAR, existing.severity)
    if existing is None:
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
