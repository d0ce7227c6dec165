from __future__ import annotations

from rules.smoke import SmokeBattery, SmokeDevice, SmokeIncident, smoke_battery, smoke_device, smoke_fire
from tests.rules.support import MIN, T0, ctx, reading
from whistle.domain import AlarmKind, Channel, Detection, DetectionAction, DeviceType, Reading, Severity, SubjectType


def ev(device: str, event: str, ts: int, building: str | None = "RJ-B0001", seq: int | None = None) -> Reading:
    return reading(
        device,
        DeviceType.SMOKE,
        Channel.EVENT,
        ts,
        {"event": event},
        seq=seq,
        building=building,
        grid="RJ-G1-M01" if building else None,
    )


def fire(r: Reading, st: SmokeIncident) -> list[Detection]:
    return smoke_fire(r, st, ctx(r.ts)) or []


def test_first_detector_raises_critical_fire_at_once() -> None:
    st = SmokeIncident()
    (d,) = fire(ev("SM-1", "alarm", T0), st)
    assert (d.kind, d.severity, d.action) == (AlarmKind.SMOKE_FIRE, Severity.CRITICAL, DetectionAction.RAISE)
    assert (d.subject_type, d.subject_id, d.grid_id) == (SubjectType.BUILDING, "RJ-B0001", "RJ-G1-M01")
    assert d.evidence["detectors"] == ["SM-1"]
    assert d.evidence["confirmed"] is False
    assert d.ts == T0


def test_second_detector_within_the_window_confirms_the_same_incident() -> None:
    st = SmokeIncident()
    fire(ev("SM-1", "alarm", T0), st)
    (d,) = fire(ev("SM-2", "alarm", T0 + 8_000), st)
    assert d.action is DetectionAction.RAISE and d.subject_id == "RJ-B0001"
    assert d.evidence["detectors"] == ["SM-1", "SM-2"]
    assert d.evidence["confirmed"] is True
    assert d.evidence["first_alarm_ts"] == T0


def test_second_detector_after_the_window_adds_evidence_but_does_not_confirm() -> None:
    st = SmokeIncident()
    fire(ev("SM-1", "alarm", T0), st)
    (d,) = fire(ev("SM-2", "alarm", T0 + 6 * MIN), st)
    assert d.evidence["detectors"] == ["SM-1", "SM-2"] and d.evidence["confirmed"] is False


def test_repeated_alarm_from_same_detector_adds_nothing() -> None:
    st = SmokeIncident()
    fire(ev("SM-1", "alarm", T0), st)
    assert fire(ev("SM-1", "alarm", T0 + 1000), st) == []


def test_clear_within_a_minute_by_a_lone_detector_is_self_cleared() -> None:
    st = SmokeIncident()
    fire(ev("SM-1", "alarm", T0), st)
    (d,) = fire(ev("SM-1", "alarm_clear", T0 + 20_000), st)
    assert d.action is DetectionAction.CLEAR
    assert d.evidence["self_cleared"] is True
    assert d.evidence["duration_ms"] == 20_000
    assert st.alarming == {} and st.started is None


def test_confirmed_fire_clears_only_when_every_detector_clears_and_is_not_nuisance() -> None:
    st = SmokeIncident()
    fire(ev("SM-1", "alarm", T0), st)
    fire(ev("SM-2", "alarm", T0 + 5_000), st)
    assert fire(ev("SM-1", "alarm_clear", T0 + 10_000), st) == []
    (d,) = fire(ev("SM-2", "alarm_clear", T0 + 15_000), st)
    assert d.action is DetectionAction.CLEAR and d.evidence["self_cleared"] is False


def test_long_alarm_is_not_a_nuisance() -> None:
    st = SmokeIncident()
    fire(ev("SM-1", "alarm", T0), st)
    (d,) = fire(ev("SM-1", "alarm_clear", T0 + 61_000), st)
    assert d.evidence["self_cleared"] is False


def test_nuisance_window_is_configurable() -> None:
    st = SmokeIncident()
    c = ctx(T0, **{"smoke.fire": {"nuisance_window_s": 90}})
    smoke_fire(ev("SM-1", "alarm", T0), st, c)
    (d,) = smoke_fire(ev("SM-1", "alarm_clear", T0 + 80_000), st, c) or []
    assert d.evidence["self_cleared"] is True


def test_out_of_order_clear_before_its_alarm_leaves_no_stuck_incident() -> None:
    st = SmokeIncident()
    # the clear (later event time) is delivered first; the older alarm raises the fire and clears it at once
    assert fire(ev("SM-1", "alarm_clear", T0 + 30_000), st) == []
    got = fire(ev("SM-1", "alarm", T0), st)
    assert [(d.action, d.ts) for d in got] == [(DetectionAction.RAISE, T0), (DetectionAction.CLEAR, T0 + 30_000)]
    assert st.alarming == {} and st.started is None


def test_clear_without_alarm_and_other_events_do_nothing() -> None:
    st = SmokeIncident()
    assert fire(ev("SM-1", "alarm_clear", T0), st) == []
    for event in ("test", "mute", "fault", "low_battery"):
        assert fire(ev("SM-1", event, T0), st) == []


def test_third_nuisance_alarm_of_a_detector_raises_a_maintenance_fault() -> None:
    st = SmokeIncident()
    out: list[Detection] = []
    for day in range(3):
        t = T0 + day * 86_400_000
        fire(ev("SM-1", "alarm", t), st)
        out = fire(ev("SM-1", "alarm_clear", t + 30_000), st)
    clear, maint = out
    assert clear.kind is AlarmKind.SMOKE_FIRE and clear.evidence["self_cleared"] is True
    assert (maint.kind, maint.subject_type, maint.subject_id) == (AlarmKind.SMOKE_FAULT, SubjectType.DEVICE, "SM-1")
    assert maint.evidence["reason"] == "repeated_nuisance" and maint.evidence["self_cleared_alarms"] == 3


def test_nuisance_alarms_spread_beyond_the_window_raise_no_maintenance() -> None:
    st = SmokeIncident()
    for i in range(3):
        t = T0 + i * 20 * 86_400_000
        fire(ev("SM-1", "alarm", t), st)
        out = fire(ev("SM-1", "alarm_clear", t + 30_000), st)
        assert [d.kind for d in out] == [AlarmKind.SMOKE_FIRE]


def test_detection_ids_are_stable_for_replays_and_distinct_per_trigger() -> None:
    a = fire(ev("SM-1", "alarm", T0, seq=5), SmokeIncident())[0]
    b = fire(ev("SM-1", "alarm", T0, seq=5), SmokeIncident())[0]
    c = fire(ev("SM-1", "alarm", T0, seq=6), SmokeIncident())[0]
    assert a.detection_id == b.detection_id != c.detection_id


def test_device_without_building_is_its_own_subject() -> None:
    (d,) = fire(ev("SM-9", "alarm", T0, building=None), SmokeIncident())
    assert (d.subject_type, d.subject_id) == (SubjectType.DEVICE, "SM-9")


def test_disabled_rule_raises_nothing() -> None:
    st = SmokeIncident()
    assert smoke_fire(ev("SM-1", "alarm", T0), st, ctx(T0, **{"smoke.fire": {"enabled": False}})) is None


def test_device_reports_raise_and_clear_fault_tamper_and_low_battery() -> None:
    st = SmokeDevice()
    c = ctx(T0)
    seen = []
    for i, event in enumerate(["fault", "fault", "tamper", "low_battery", "fault_clear", "tamper_clear", "mute"]):
        for d in smoke_device(ev("SM-1", event, T0 + i * 1000), st, c) or []:
            seen.append((d.kind, d.action, d.severity))
    assert seen == [
        (AlarmKind.SMOKE_FAULT, DetectionAction.RAISE, Severity.MINOR),
        (AlarmKind.SMOKE_TAMPER, DetectionAction.RAISE, Severity.MAJOR),
        (AlarmKind.SMOKE_LOW_BATTERY, DetectionAction.RAISE, Severity.WARNING),
        (AlarmKind.SMOKE_FAULT, DetectionAction.CLEAR, Severity.MINOR),
        (AlarmKind.SMOKE_TAMPER, DetectionAction.CLEAR, Severity.MAJOR),
    ]


def test_a_late_fault_older_than_its_clear_is_history() -> None:
    st = SmokeDevice()
    c = ctx(T0)
    smoke_device(ev("SM-1", "fault", T0), st, c)
    assert smoke_device(ev("SM-1", "fault_clear", T0 + 5000), st, c)
    assert smoke_device(ev("SM-1", "fault", T0 + 1000), st, c) is None


def status(pct: float, ts: int) -> Reading:
    return reading("SM-1", DeviceType.SMOKE, Channel.STATUS, ts, {"battery_pct": pct})


def test_battery_status_raises_below_20_and_clears_at_30_with_hysteresis() -> None:
    st = SmokeBattery()
    c = ctx(T0)
    actions = []
    for i, pct in enumerate([60, 25, 19, 18, 25, 29, 95, 96]):
        for d in smoke_battery(status(pct, T0 + i * 86_400_000), st, c) or []:
            actions.append((pct, d.action))
    assert actions == [(19, DetectionAction.RAISE), (95, DetectionAction.CLEAR)]


def test_battery_status_duplicate_or_older_is_ignored() -> None:
    st = SmokeBattery()
    c = ctx(T0)
    smoke_battery(status(50, T0 + 10), st, c)
    assert smoke_battery(status(5, T0 + 10), st, c) is None
    assert smoke_battery(status(5, T0), st, c) is None


def test_an_alarm_that_arrives_after_its_own_clear_still_raises_the_fire_and_clears_it() -> None:
    """Two collectors on a shared subscription: the alarm went through the one a few seconds behind, so its
    clear is judged first. The fire happened; one process, in order, raises it and clears it (before, the
    late alarm was taken for history and the fire never reached anyone)."""
    in_order, late = SmokeIncident(), SmokeIncident()
    alarm, clear = ev("SM-1", "alarm", T0, seq=7), ev("SM-1", "alarm_clear", T0 + 3 * MIN, seq=8)
    want = fire(alarm, in_order) + fire(clear, in_order)
    assert fire(clear, late) == []
    got = fire(alarm, late)
    assert [(d.kind, d.action, d.ts, d.source_id) for d in got] == [(d.kind, d.action, d.ts, d.source_id) for d in want]
    assert [d.action for d in got] == [DetectionAction.RAISE, DetectionAction.CLEAR]
    assert fire(ev("SM-1", "alarm", T0 + MIN, seq=9), late) == []  # older than the clear, and its pair is used
    (again,) = fire(ev("SM-1", "alarm", T0 + 10 * MIN, seq=10), late)  # a new alarm after it: a new incident
    assert again.action is DetectionAction.RAISE and again.evidence["first_alarm_ts"] == T0 + 10 * MIN
