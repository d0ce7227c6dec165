"""Scoring alarms against the simulator's ground truth: precision, recall, delay, false alerts.

Pure functions over two lists: the truth lines the simulator wrote (`--truth-out`, JSON lines:
kind, subject_type, subject_ids, start, end, confounder, ...) and the alarms the pipeline raised
(kind, subject_id, first_seen in event-time ms). An alarm *matches* an incident of its kind when
they share a subject and the alarm was raised between the incident's start (less `early_ms`) and
its end (plus `grace_ms`; open-ended incidents run to the end of the evaluation). Confounders
are never incidents: an alarm on one is a false alert, which is the point of simulating them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HOUR_MS = 3_600_000  # the evaluation imports nothing from the product (pyproject.toml, import contracts)


@dataclass(frozen=True, slots=True)
class AlarmRow:
    kind: str
    subject_id: str
    first_seen: int


@dataclass(frozen=True, slots=True)
class Incident:
    kind: str
    subjects: tuple[str, ...]
    start: int
    end: int | None


@dataclass(slots=True)
class KindScore:
    kind: str
    incidents: int = 0
    detected: int = 0
    alarms: int = 0
    true_alarms: int = 0
    delays_ms: list[int] = field(default_factory=list)
    false_on_confounders: dict[str, int] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        return self.true_alarms / self.alarms if self.alarms else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.incidents if self.incidents else None

    @property
    def median_delay_h(self) -> float | None:
        return statistics.median(self.delays_ms) / HOUR_MS if self.delays_ms else None

    @property
    def p90_delay_h(self) -> float | None:
        if not self.delays_ms:
            return None
        ordered = sorted(self.delays_ms)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] / HOUR_MS

    def as_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "kind": self.kind,
            "incidents": self.incidents,
            "detected": self.detected,
            "recall": r(self.recall),
            "alarms": self.alarms,
            "true_alarms": self.true_alarms,
            "precision": r(self.precision),
            "median_delay_h": r(self.median_delay_h),
            "p90_delay_h": r(self.p90_delay_h),
            "false_alarms_on_confounders": dict(sorted(self.false_on_confounders.items())),
        }


def incidents_from_truth(lines: Iterable[Mapping[str, Any]], kind: str) -> tuple[list[Incident], list[Incident]]:
    """(incidents of `kind`, confounders that could be mistaken for it)."""
    real: list[Incident] = []
    confounders: list[Incident] = []
    for t in lines:
        inc = Incident(str(t["kind"]), tuple(t["subject_ids"]), int(t["start"]), t.get("end"))
        if t.get("confounder"):
            if kind in (t.get("could_be_mistaken_for") or t.get("mistaken_for") or ()):
                confounders.append(inc)
        elif t["kind"] == kind:
            real.append(inc)
    return real, confounders


def score_kind(
    kind: str,
    truth: Sequence[Mapping[str, Any]],
    alarms: Sequence[AlarmRow],
    *,
    run_end: int,
    early_ms: int = 0,
    grace_ms: int = 0,
    eligible: Any = None,
) -> KindScore:
    """Match one kind's alarms with its incidents. `eligible(incident) -> bool` drops incidents too short
    (or too late in the run) for any detector to be judged on them."""
    real, confounders = incidents_from_truth(truth, kind)
    if eligible is not None:
        real = [i for i in real if eligible(i)]
    mine = [a for a in alarms if a.kind == kind]
    by_subject: dict[str, list[Incident]] = {}
    for inc in real:
        for s in inc.subjects:
            by_subject.setdefault(s, []).append(inc)
    conf_by_subject: dict[str, list[Incident]] = {}
    for inc in confounders:
        for s in inc.subjects:
            conf_by_subject.setdefault(s, []).append(inc)
    out = KindScore(kind, incidents=len(real), alarms=len(mine))
    first_hit: dict[int, int] = {}
    for a in mine:
        hit = None
        for inc in by_subject.get(a.subject_id, ()):
            end = (inc.end if inc.end is not None else run_end) + grace_ms
            if inc.start - early_ms <= a.first_seen <= end:
                hit = inc
                break
        if hit is None:
            for conf in conf_by_subject.get(a.subject_id, ()):
                end = (conf.end if conf.end is not None else run_end) + grace_ms
                if conf.start - early_ms <= a.first_seen <= end:
                    out.false_on_confounders[conf.kind] = out.false_on_confounders.get(conf.kind, 0) + 1
                    break
            continue
        out.true_alarms += 1
        key = id(hit)
        delay = max(0, a.first_seen - hit.start)
        if key not in first_hit or delay < first_hit[key]:
            first_hit[key] = delay
    out.detected = len(first_hit)
    out.delays_ms = sorted(first_hit.values())
    return out
