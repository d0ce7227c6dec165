"""Scoring what the service raised (alarms and tickets read back over REST) against a source's truth.

The matching is `evaluation.scoring` (an alarm matches an incident of its kind on the same subject
raised between its start, less `early_ms`, and its end, plus `grace_ms`). Subjects are compared in
one space per kind, because sources name them differently (CREST's continuous flow is on the
water meter, the alarm is on its household): households for the household models and continuous
flow, devices for e-bike charging, offline and elevators, buildings for fire. Truth subjects are
mapped into that space through the registry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evaluation.frontdoor.baselines import ts_ms
from evaluation.scoring import AlarmRow, Incident, KindScore, score_kind

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MINUTE_MS = 60_000

LONE_ELDER = "household.lone_elder_inactive"
GROUP_RENTAL = "household.group_rental_suspected"
EBIKE = "ebike.indoor_charging"
FLOW = "water.continuous_flow"
OFFLINE = "device.offline"

# kind -> the space its subjects are compared in
SPACE = {
    LONE_ELDER: "household",
    GROUP_RENTAL: "household",
    FLOW: "household",
    EBIKE: "device",
    OFFLINE: "device",
    "smoke.fire": "building",
    "elevator.trapped": "device",
    "elevator.fault": "device",
}
KINDS = tuple(SPACE)
LEARN_DAYS = 7  # the "after the first week" figures: the model's shipped min_days (rules/default.yaml)


class Places:
    """Where registry subjects are: a device's household and building, a household's building."""

    def __init__(self, registry: Mapping[str, Any]) -> None:
        self.household_building = {h["id"]: h.get("building_id") for h in registry.get("households", [])}
        self.device_household = {d["id"]: d.get("household_id") for d in registry.get("devices", [])}
        self.device_building = {
            d["id"]: d.get("building_id") or self.household_building.get(d.get("household_id") or "")
            for d in registry.get("devices", [])
        }
        self.elders = sorted(h["id"] for h in registry.get("households", []) if "lone_elder" in (h.get("tags") or ()))

    def truth_subject(self, space: str, subject_type: str, sid: str) -> str:
        if subject_type == space:
            return sid
        if subject_type == "device" and space == "household":
            return self.device_household.get(sid) or sid
        if subject_type == "device" and space == "building":
            return self.device_building.get(sid) or sid
        if subject_type == "household" and space == "building":
            return self.household_building.get(sid) or sid
        return sid


def alarm_subject(space: str, alarm: Mapping[str, Any]) -> str:
    if space == "household":
        return str(alarm.get("household_id") or alarm["subject_id"])
    if space == "building" and alarm.get("subject_type") != "building":
        return str(alarm.get("building_id") or alarm["subject_id"])
    return str(alarm["subject_id"])


def truth_in_space(truth: Sequence[Mapping[str, Any]], kind: str, places: Places) -> list[dict[str, Any]]:
    """The truth lines with their subjects mapped into `kind`'s space."""
    space = SPACE[kind]
    out = []
    for t in truth:
        st = str(t.get("subject_type", space))
        out.append({**t, "subject_ids": [places.truth_subject(space, st, s) for s in t["subject_ids"]]})
    return out


def rows_of(alarms: Sequence[Mapping[str, Any]], kind: str) -> list[AlarmRow]:
    space = SPACE.get(kind, "device")
    return [AlarmRow(kind, alarm_subject(space, a), ts_ms(a["first_seen"])) for a in alarms if a["kind"] == kind]


def eligible_for(kind: str, span: tuple[int, int]) -> Callable[[Incident], bool]:
    """Incidents a detector can be judged on within the span (as the tuning harness judges them)."""
    hi = span[1]
    need = {
        LONE_ELDER: 12 * HOUR_MS,
        GROUP_RENTAL: 13 * DAY_MS,
        FLOW: 2 * HOUR_MS,
        OFFLINE: 3 * HOUR_MS,
        EBIKE: 15 * MINUTE_MS,
    }.get(kind, 0)

    def ok(i: Incident) -> bool:
        if kind in (OFFLINE, EBIKE) and i.end is not None and i.end - i.start < need:
            return False  # too short for anyone to call it (three missed readings; a quarter hour of charge)
        return i.start <= hi - need

    return ok


def windows(kind: str) -> tuple[int, int]:
    """(early_ms, grace_ms) of a kind's matching."""
    if kind == GROUP_RENTAL:
        return DAY_MS, DAY_MS  # a lead carries the end of the day judged
    return 5 * MINUTE_MS, HOUR_MS


def score_rows(
    kind: str, truth: Sequence[Mapping[str, Any]], rows: Sequence[AlarmRow], span: tuple[int, int], places: Places
) -> KindScore:
    early, grace = windows(kind)
    return score_kind(
        kind,
        truth_in_space(truth, kind, places),
        rows,
        run_end=span[1],
        early_ms=early,
        grace_ms=grace,
        eligible=eligible_for(kind, span),
    )


def with_delays(s: KindScore) -> dict[str, Any]:
    """A kind's scores, with the delays (h) kept so that seeds can be pooled."""
    return {**s.as_dict(), "delays_h": [round(d / HOUR_MS, 3) for d in s.delays_ms]}


def per_100(score: KindScore, elder_days: int) -> float | None:
    return round(100 * (score.alarms - score.true_alarms) / elder_days, 2) if elder_days else None


def tickets_by_kind(
    tickets: Sequence[Mapping[str, Any]], alarms: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per kind: tickets, subjects with a ticket, the most tickets one subject had."""
    subject_of = {a["id"]: (a["kind"], alarm_subject(SPACE.get(a["kind"], "device"), a)) for a in alarms}
    per: dict[str, Counter[str]] = {}
    for t in tickets:
        subjects = {subject_of[i][1] for i in t.get("alarm_ids", []) if i in subject_of}
        for s in subjects or {"?"}:
            per.setdefault(t["kind"], Counter())[s] += 1
    return {
        kind: {"tickets": sum(c.values()), "subjects": len(c), "most_for_one_subject": max(c.values())}
        for kind, c in sorted(per.items())
    }


def causes(alarms: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Alarms by kind and the cause their evidence names."""
    out: dict[str, Counter[str]] = {}
    for a in alarms:
        ev = a.get("evidence") or {}
        what = ev.get("device_type") or ev.get("basis") or ev.get("reason") or "-"
        out.setdefault(a["kind"], Counter())[str(what)] += 1
    return {k: dict(c.most_common()) for k, c in sorted(out.items())}


def score_run(
    *,
    truth: Sequence[Mapping[str, Any]],
    registry: Mapping[str, Any],
    span: tuple[int, int],
    days: int,
    alarms: Sequence[Mapping[str, Any]],
    tickets: Sequence[Mapping[str, Any]],
    fixed_rule_alerts: Sequence[AlarmRow],
    power_only_leads: Sequence[AlarmRow],
    group_rental_judged: bool,
) -> dict[str, Any]:
    """The figures of one run."""
    places = Places(registry)
    kinds = {kind: score_rows(kind, truth, rows_of(alarms, kind), span, places) for kind in KINDS}
    elder_days = len(places.elders) * days
    model = kinds[LONE_ELDER]
    fixed = score_rows(LONE_ELDER, truth, fixed_rule_alerts, span, places)
    cutoff = span[0] + LEARN_DAYS * DAY_MS
    learned_days = len(places.elders) * max(0, days - LEARN_DAYS)

    def after_learning(rows: Sequence[AlarmRow]) -> float | None:
        s = score_rows(LONE_ELDER, truth, [r for r in rows if r.first_seen >= cutoff], span, places)
        return per_100(s, learned_days)

    power = score_rows(GROUP_RENTAL, truth, power_only_leads, span, places)
    tk = tickets_by_kind(tickets, alarms)
    return {
        "kinds": {k: with_delays(v) for k, v in kinds.items()},
        "lone_elder": {
            "households": len(places.elders),
            "elder_days": elder_days,
            "model": with_delays(model),
            "model_false_alerts_per_100_elder_days": per_100(model, elder_days),
            "model_false_alerts_per_100_elder_days_after_first_week": after_learning(rows_of(alarms, LONE_ELDER)),
            "fixed_rule": with_delays(fixed),
            "fixed_rule_false_alerts_per_100_elder_days": per_100(fixed, elder_days),
            "fixed_rule_false_alerts_per_100_elder_days_after_first_week": after_learning(fixed_rule_alerts),
            "tickets": tk.get(LONE_ELDER, {"tickets": 0, "subjects": 0, "most_for_one_subject": 0}),
        },
        "group_rental": {
            "judged": group_rental_judged,
            "model": with_delays(kinds[GROUP_RENTAL]),
            "power_only": with_delays(power),
        },
        "alarms": len(alarms),
        "tickets": {"total": len(tickets), "by_kind": tk},
        "alarms_by_kind_and_cause": causes(alarms),
    }
