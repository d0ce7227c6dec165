from __future__ import annotations

from evaluation.scoring import AlarmRow, score_kind

H = 3_600_000
TRUTH = [
    {
        "kind": "household.lone_elder_inactive",
        "subject_type": "household",
        "subject_ids": ["H1"],
        "start": 10 * H,
        "end": None,
        "confounder": False,
    },
    {
        "kind": "household.lone_elder_inactive",
        "subject_type": "household",
        "subject_ids": ["H2"],
        "start": 20 * H,
        "end": 30 * H,
        "confounder": False,
    },
    {
        "kind": "confounder.elder_away",
        "subject_type": "household",
        "subject_ids": ["H3"],
        "start": 5 * H,
        "end": 50 * H,
        "confounder": True,
        "could_be_mistaken_for": ["household.lone_elder_inactive"],
    },
    {
        "kind": "smoke.fire",
        "subject_type": "building",
        "subject_ids": ["B1"],
        "start": 1 * H,
        "end": 2 * H,
        "confounder": False,
    },
]


def test_matches_delays_and_false_alerts_on_confounders() -> None:
    alarms = [
        AlarmRow("household.lone_elder_inactive", "H1", 13 * H),
        AlarmRow("household.lone_elder_inactive", "H1", 15 * H),  # a second alarm on the same incident
        AlarmRow("household.lone_elder_inactive", "H2", 31 * H),  # after the end: no match
        AlarmRow("household.lone_elder_inactive", "H3", 9 * H),  # the elder was away
        AlarmRow("household.lone_elder_inactive", "H9", 9 * H),  # nothing there at all
        AlarmRow("smoke.fire", "B1", 1 * H),
    ]
    s = score_kind("household.lone_elder_inactive", TRUTH, alarms, run_end=100 * H)
    assert (s.incidents, s.detected, s.alarms, s.true_alarms) == (2, 1, 5, 2)
    assert s.delays_ms == [3 * H] and s.median_delay_h == 3.0
    assert s.false_on_confounders == {"confounder.elder_away": 1}
    assert s.precision == 0.4 and s.recall == 0.5
    with_grace = score_kind("household.lone_elder_inactive", TRUTH, alarms, run_end=100 * H, grace_ms=2 * H)
    assert with_grace.detected == 2


def test_eligibility_drops_incidents_nobody_could_judge() -> None:
    s = score_kind("household.lone_elder_inactive", TRUTH, [], run_end=100 * H, eligible=lambda i: i.start < 15 * H)
    assert s.incidents == 1 and s.recall == 0.0 and s.precision is None
