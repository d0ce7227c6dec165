"""Building a detection from the reading that triggered it: one place for subject, placement and source."""

from __future__ import annotations

from collections.abc import Mapping

from whistle.domain import AlarmKind, Detection, DetectionAction, Reading, Severity, SubjectType


def detect(
    r: Reading,
    kind: AlarmKind,
    severity: Severity,
    action: DetectionAction,
    evidence: Mapping[str, object],
    *,
    subject: SubjectType = SubjectType.DEVICE,
    ts: int | None = None,
    source_by_seq: bool = True,
) -> Detection:
    """A detection about `r`'s device, household or building (the device when it has no such placement).

    Its `source_id` (the device and the reading's `seq`, or its event time) makes the detection id
    stable: the same reading replayed gives the same detection.
    """
    if subject is SubjectType.HOUSEHOLD and r.household_id:
        subject_id = r.household_id
    elif subject is SubjectType.BUILDING and r.building_id:
        subject_id = r.building_id
    else:
        subject, subject_id = SubjectType.DEVICE, r.device_id
    mark = r.seq if source_by_seq and r.seq is not None else r.ts
    return Detection(
        kind=kind,
        severity=severity,
        subject_type=subject,
        subject_id=subject_id,
        ts=r.ts if ts is None else ts,
        action=action,
        evidence=evidence,
        household_id=r.household_id,
        building_id=r.building_id,
        grid_id=r.grid_id,
        source_id=f"{r.device_id}:{mark}",
    )
