from __future__ import annotations

from rules.engine import RuleSet
from rules.smoke import SmokeIncident, smoke_fire
from whistle.domain import AlarmKind, Channel, DetectionAction, DeviceType, Reading, Severity, SubjectType

T0 = 1_795_000_000_000


def ev(device: str, event: str, ts: int, building: str | None = "RJ-B0001", seq: int | None = None) -> Reading:
    return Reading(
        device,
        DeviceType.SMOKE,
        Channel.EVENT,
        ts,
        ts + 50,
        {"event": event},
        seq,
        None,
        building,
        "RJ-G1-M01" if building else None,
    )


def test_first_detector_raises_critical_fire_at_once() -> None:
    st = SmokeIncident()
    (d,) = smoke_fire(ev("SM-1", "alarm", T0), st)
    assert (d.kind, d.severity, d.action) == (AlarmKind.SMOKE_FIRE, Severity.CRITICAL, DetectionAction.RAISE)
    assert (d.subject_type, d.subject_id, d.grid_id) == (SubjectType.BUILDING, "RJ-B0001", "RJ-G1-M01")
    assert d.evidence["detectors"] == ["SM-1"]
    assert d.evidence["confirmed"] is False
    assert d.ts == T0


def test_second_detector_confirms_the_same_incident() -> None:
    st = SmokeIncident()
    smoke_fire(ev("SM-1", "alarm", T0), st)
    (d,) = smoke_fire(ev("SM-2", "alarm", T0 + 8_000), st)
    assert d.action is DetectionAction.RAISE and d.subject_id == "RJ-B0001"
    assert d.evidence["detectors"] == ["SM-1", "SM-2"]
    assert d.evidence["confirmed"] is True
    assert d.evidence["first_alarm_ts"] == T0


def test_repeated_alarm_from_same_detector_adds_nothing() -> None:
    st = SmokeIncident()
    smoke_fire(ev("SM-1", "alarm", T0), st)
    assert smoke_fire(ev("SM-1", "alarm", T0 + 1000), st) == []


def test_clear_within_a_minute_by_a_lone_detector_is_self_cleared() -> None:
    st = SmokeIncident()
    smoke_fire(ev("SM-1", "alarm", T0), st)
    (d,) = smoke_fire(ev("SM-1", "alarm_clear", T0 + 20_000), st)
    assert d.action is DetectionAction.CLEAR
    assert d.evidence["self_cleared"] is True
    assert d.evidence["duration_ms"] == 20_000
    assert st.alarming == {} and st.started is None


def test_confirmed_fire_clears_only_when_every_detector_clears_and_is_not_nuisance() -> None:
    st = SmokeIncident()
    smoke_fire(ev("SM-1", "alarm", T0), st)
    smoke_fire(ev("SM-2", "alarm", T0 + 5_000), st)
    assert smoke_fire(ev("SM-1", "alarm_clear", T0 + 10_000), st) == []
    (d,) = smoke_fire(ev("SM-2", "alarm_clear", T0 + 15_000), st)
    assert d.action is DetectionAction.CLEAR and d.evidence["self_cleared"] is False


def test_long_alarm_is_not_a_nuisance() -> None:
    st = SmokeIncident()
    smoke_fire(ev("SM-1", "alarm", T0), st)
    (d,) = smoke_fire(ev("SM-1", "alarm_clear", T0 + 61_000), st)
    assert d.evidence["self_cleared"] is False


def test_clear_without_alarm_and_other_events_do_nothing() -> None:
    st = SmokeIncident()
    assert smoke_fire(ev("SM-1", "alarm_clear", T0), st) == []
    for event in ("test", "mute", "fault", "low_battery"):
        assert smoke_fire(ev("SM-1", event, T0), st) == []


def test_detection_ids_are_stable_for_replays_and_distinct_per_trigger() -> None:
    a = smoke_fire(ev("SM-1", "alarm", T0, seq=5), SmokeIncident())[0]
    b = smoke_fire(ev("SM-1", "alarm", T0, seq=5), SmokeIncident())[0]
    c = smoke_fire(ev("SM-1", "alarm", T0, seq=6), SmokeIncident())[0]
    assert a.detection_id == b.detection_id != c.detection_id


def test_device_without_building_is_its_own_subject() -> None:
    (d,) = smoke_fire(ev("SM-9", "alarm", T0, building=None), SmokeIncident())
    assert (d.subject_type, d.subject_id) == (SubjectType.DEVICE, "SM-9")


def test_ruleset_keeps_state_per_building() -> None:
    rules = RuleSet()
    rules.evaluate(ev("SM-1", "alarm", T0, building="B1"))
    (d,) = rules.evaluate(ev("SM-2", "alarm", T0 + 1, building="B2"))
    assert d.subject_id == "B2" and d.evidence["detectors"] == ["SM-2"]
    water = Reading("WM-1", DeviceType.WATER, Channel.DATA, T0, T0, {"total_m3": 1.0})
    assert rules.evaluate(water) == []
