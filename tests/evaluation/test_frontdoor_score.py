"""Scoring alarms read back over REST, pooling seeds and choosing the operating point (no I/O)."""

from __future__ import annotations

from typing import Any

from evaluation.frontdoor.score import (
    FLOW,
    LONE_ELDER,
    Places,
    rows_of,
    score_rows,
    score_run,
    tickets_by_kind,
)
from evaluation.frontdoor.suite import choose, lone_elder_verdict, pool
from evaluation.scoring import AlarmRow

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_793_635_200_000  # 2026-11-03T00:00+08:00
SPAN = (T0, T0 + 15 * DAY)
REGISTRY: dict[str, Any] = {
    "households": [
        {"id": "H1", "building_id": "B1", "tags": ["lone_elder"]},
        {"id": "H2", "building_id": "B1", "tags": ["lone_elder"]},
        {"id": "H3", "building_id": "B1", "tags": []},
    ],
    "devices": [
        {"id": "WM-1", "type": "water", "household_id": "H1"},
        {"id": "WM-3", "type": "water", "household_id": "H3"},
        {"id": "EB-3", "type": "ebike", "household_id": "H3"},
    ],
}


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def alarm(
    aid: str, kind: str, subject_type: str, subject: str, household: str | None, first_seen: int
) -> dict[str, Any]:
    return {
        "id": aid,
        "kind": kind,
        "subject_type": subject_type,
        "subject_id": subject,
        "household_id": household,
        "building_id": "B1",
        "first_seen": iso(first_seen),
        "evidence": {"basis": "routine_day"},
    }


def truth(kind: str, subject_type: str, subject: str, start: int, end: int | None, **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "subject_type": subject_type, "subject_ids": [subject], "start": start, "end": end, **kw}


def test_a_flow_on_a_water_meter_matches_the_alarm_on_its_household() -> None:
    places = Places(REGISTRY)
    lines = [truth(FLOW, "device", "WM-3", T0 + 2 * DAY, T0 + 2 * DAY + 5 * HOUR, confounder=False)]
    rows = rows_of([alarm("a1", FLOW, "household", "H3", "H3", T0 + 2 * DAY + 3 * HOUR)], FLOW)
    s = score_rows(FLOW, lines, rows, SPAN, places)
    assert (s.incidents, s.detected, s.alarms, s.true_alarms) == (1, 1, 1, 1)
    assert s.delays_ms == [3 * HOUR]


def test_a_run_counts_false_alerts_per_100_elder_days_for_the_model_and_the_fixed_rule() -> None:
    lines = [
        truth(LONE_ELDER, "household", "H1", T0 + 9 * DAY, None, confounder=False),
        truth(
            "confounder.elder_away",
            "household",
            "H2",
            T0 + 3 * DAY,
            T0 + 5 * DAY,
            confounder=True,
            could_be_mistaken_for=[LONE_ELDER],
        ),
    ]
    alarms = [
        alarm("a1", LONE_ELDER, "household", "H1", "H1", T0 + 9 * DAY + 5 * HOUR),  # the incident, after 5 h
        alarm("a2", LONE_ELDER, "household", "H1", "H1", T0 + 9 * DAY + 7 * HOUR),  # raised again: a second alert
        alarm("a3", LONE_ELDER, "household", "H2", "H2", T0 + 4 * DAY),  # the elder was away, undeclared
    ]
    tickets = [
        {"id": "t1", "kind": LONE_ELDER, "alarm_ids": ["a1"]},
        {"id": "t2", "kind": LONE_ELDER, "alarm_ids": ["a2"]},
        {"id": "t3", "kind": LONE_ELDER, "alarm_ids": ["a3"]},
    ]
    fixed = [AlarmRow(LONE_ELDER, "H1", T0 + 9 * DAY + 11 * HOUR), AlarmRow(LONE_ELDER, "H2", T0 + DAY)]
    report = score_run(
        truth=lines,
        registry=REGISTRY,
        span=SPAN,
        days=15,
        alarms=alarms,
        tickets=tickets,
        fixed_rule_alerts=fixed,
        power_only_leads=[],
        group_rental_judged=False,
    )
    le = report["lone_elder"]
    assert le["households"] == 2 and le["elder_days"] == 30
    assert le["model"]["detected"] == 1 and le["model"]["delays_h"] == [5.0]
    assert le["model_false_alerts_per_100_elder_days"] == round(100 * 1 / 30, 2)  # a2 matched the incident
    assert le["model"]["false_alarms_on_confounders"] == {"confounder.elder_away": 1}
    assert le["fixed_rule"]["delays_h"] == [11.0] and le["fixed_rule_false_alerts_per_100_elder_days"] == 3.33
    assert le["tickets"] == {"tickets": 3, "subjects": 2, "most_for_one_subject": 2}
    assert report["group_rental"]["judged"] is False
    assert report["alarms_by_kind_and_cause"] == {LONE_ELDER: {"routine_day": 3}}


def test_tickets_are_counted_per_subject_of_their_alarms() -> None:
    alarms = [alarm("a", "ebike.indoor_charging", "device", "EB-3", "H3", T0)]
    tickets = [{"kind": "ebike.indoor_charging", "alarm_ids": ["a"]}] * 3
    assert tickets_by_kind(tickets, alarms) == {
        "ebike.indoor_charging": {"tickets": 3, "subjects": 1, "most_for_one_subject": 3}
    }


def run_figures(seed: int, *, found: int, incidents: int, alarms: int, delays: list[float], fixed_alarms: int) -> dict:
    def kind(detected: int, n_incidents: int, n_alarms: int, d: list[float]) -> dict[str, Any]:
        return {
            "incidents": n_incidents,
            "detected": detected,
            "alarms": n_alarms,
            "true_alarms": detected,
            "delays_h": d,
            "false_alarms_on_confounders": {},
        }

    empty = kind(0, 0, 0, [])
    return {
        "seed": seed,
        "lone_elder": {
            "households": 10,
            "elder_days": 150,
            "model": kind(found, incidents, alarms, delays),
            "fixed_rule": kind(incidents, incidents, fixed_alarms, [10.0] * incidents),
            "tickets": {"tickets": alarms, "subjects": 3, "most_for_one_subject": 2},
        },
        "group_rental": {"judged": True, "model": empty, "power_only": empty},
        "kinds": {"ebike.indoor_charging": empty, "water.continuous_flow": empty, "device.offline": empty},
        "run": {"seconds": {"total": 60.0}},
    }


def test_seeds_pool_into_one_figure_and_the_verdict_follows_the_targets() -> None:
    a = run_figures(7, found=2, incidents=2, alarms=3, delays=[2.0, 3.0], fixed_alarms=20)
    b = run_figures(11, found=1, incidents=1, alarms=1, delays=[5.0], fixed_alarms=10)
    p = pool([a, b])
    le = p["lone_elder"]
    assert le["elder_days"] == 300 and le["model"]["incidents"] == 3 and le["model"]["median_delay_h"] == 3.0
    assert le["model_false_alerts_per_100_elder_days"] == round(100 * 1 / 300, 2)
    assert le["fixed_rule_false_alerts_per_100_elder_days"] == round(100 * 27 / 300, 2)
    v = lone_elder_verdict(p)
    assert v["all_targets"] and v["beats_fixed_rule_on_delay_and_false_alerts"]
    slow = pool([run_figures(7, found=2, incidents=2, alarms=2, delays=[6.0, 9.0], fixed_alarms=20)])
    assert not lone_elder_verdict(slow)["median_delay_within_4_h"]
    missed = pool([run_figures(7, found=1, incidents=2, alarms=1, delays=[1.0], fixed_alarms=20)])
    assert not lone_elder_verdict(missed)["every_incident_found"]


def test_the_operating_point_is_one_that_meets_every_target_else_one_that_beats_the_fixed_rule() -> None:
    def point(name: str, **kw: Any) -> dict[str, Any]:
        pooled = pool([run_figures(7, **kw)])
        return {"setting": name, "pooled": pooled, "verdict": lone_elder_verdict(pooled)}

    slow_quiet = point("quiet", found=2, incidents=2, alarms=3, delays=[6.0, 7.0], fixed_alarms=20)
    slow_noisy = point("noisy", found=2, incidents=2, alarms=12, delays=[5.0, 6.0], fixed_alarms=20)
    worse = point("worse", found=2, incidents=2, alarms=40, delays=[1.0, 2.0], fixed_alarms=20)
    assert choose([slow_noisy, slow_quiet, worse])["setting"] == "quiet"
    good = point("good", found=2, incidents=2, alarms=2, delays=[1.0, 3.0], fixed_alarms=20)
    assert choose([slow_quiet, good, worse])["setting"] == "good"
    chosen = choose([worse])
    assert chosen["setting"] == "worse" and "no setting beats the fixed rule" in chosen["why"]
