"""What a detection does to the alarm of its (kind, subject): a pure decision, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from whistle.domain import Alarm, Detection, DetectionAction, Severity


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
