from __future__ import annotations

from rules.water import FlowState, continuous_flow
from tests.rules.support import HOUR, MIN, T0, ctx, reading, topology
from whistle.domain import AlarmKind, Channel, DeviceType, Reading, Severity, SubjectType

STEP = 15 * MIN


def meter(ts: int, total: float, household: str = "RJ-H000001") -> Reading:
    return reading("WM-1", DeviceType.WATER, Channel.DATA, ts, {"total_m3": total}, household=household)


def run(
    totals: list[float], st: FlowState | None = None, lone: bool = False, **over: object
) -> list[tuple[int, str, str]]:
    st = st or FlowState()
    c = ctx(T0, topology=topology(("RJ-H000001",) if lone else ()), **over)  # type: ignore[arg-type]
    out = []
    for i, total in enumerate(totals):
        for d in continuous_flow(meter(T0 + i * STEP, total), st, c) or []:
            out.append((i, d.action.value, d.severity.value))
    return out


def flowing(start: float, n: int, litres: float = 20.0) -> list[float]:
    return [round(start + i * litres / 1000, 3) for i in range(n)]


def test_flow_in_every_interval_for_three_hours_raises_then_a_pause_clears() -> None:
    totals = [*flowing(10.0, 16), 10.3, 10.3]
    assert run(totals) == [(12, "raise", "minor"), (16, "clear", "minor")]


def test_a_cleaning_morning_of_two_and_a_half_hours_is_not_a_leak_but_is_for_a_lone_elder() -> None:
    totals = [*flowing(10.0, 11, litres=45), 10.45, 10.45]
    assert run(totals) == []
    assert run(totals, lone=True) == [(8, "raise", "major"), (11, "clear", "major")]


def test_lone_elder_household_gets_major_and_evidence() -> None:
    st = FlowState()
    c = ctx(T0, topology=topology(("RJ-H000001",)))
    dets = []
    for i, total in enumerate(flowing(5.0, 10, litres=30)):
        dets += continuous_flow(meter(T0 + i * STEP, total), st, c) or []
    (d,) = dets
    assert (d.kind, d.severity, d.subject_type, d.subject_id) == (
        AlarmKind.WATER_CONTINUOUS_FLOW,
        Severity.MAJOR,
        SubjectType.HOUSEHOLD,
        "RJ-H000001",
    )
    assert d.evidence["hours"] == 2.0 and d.evidence["litres"] == 240.0 and d.evidence["lone_elder"] is True


def test_a_pause_of_one_interval_restarts_the_span() -> None:
    totals = [*flowing(1.0, 6), 1.1, 1.1, *flowing(1.1, 6)]
    assert run(totals) == []


def test_meter_reset_is_not_use_and_restarts_the_span() -> None:
    totals = flowing(3.0, 7) + flowing(0.0, 7)  # replaced meter reading from zero
    assert run(totals) == []


def test_reset_during_a_raised_flow_clears_with_reason() -> None:
    st = FlowState()
    c = ctx(T0)
    dets = []
    for i, total in enumerate([*flowing(3.0, 14), 0.0]):
        dets += continuous_flow(meter(T0 + i * STEP, total), st, c) or []
    assert [d.action.value for d in dets] == ["raise", "clear"] and dets[1].evidence["reason"] == "reset"


def test_a_gap_in_readings_is_a_gap_not_flow() -> None:
    st = FlowState()
    c = ctx(T0)
    dets = []
    for ts, total in [(T0, 1.0), (T0 + STEP, 1.02), (T0 + 3 * HOUR, 1.5), (T0 + 3 * HOUR + STEP, 1.52)]:
        dets += continuous_flow(meter(ts, total), st, c) or []
    assert dets == []


def test_late_duplicate_and_out_of_order_readings_change_nothing() -> None:
    st = FlowState()
    c = ctx(T0)
    totals = flowing(2.0, 14)
    dets = []
    for i, total in enumerate(totals):
        dets += continuous_flow(meter(T0 + i * STEP, total), st, c) or []
        assert continuous_flow(meter(T0 + i * STEP, total), st, c) is None
        if i:
            assert continuous_flow(meter(T0 + (i - 1) * STEP + MIN, 0.0), st, c) is None
    assert len(dets) == 1


def test_span_is_configurable() -> None:
    assert run(flowing(1.0, 6), **{"water.continuous_flow": {"min_span_s": 3600}}) == [(4, "raise", "minor")]


def salon_days(days: int, open_h: int = 6, start: float = 10.0) -> list[float]:
    """A shop in the flat: water in every interval for `open_h` hours a day, none for the rest."""
    totals, total = [], start
    for _ in range(days):
        for q in range(96):
            total += 0.015 if q < open_h * 4 else 0.0
            totals.append(round(total, 3))
    return totals


def test_a_shops_working_day_becomes_its_routine_and_a_tap_left_running_overnight_still_raises() -> None:
    st = FlowState()
    days = salon_days(10)
    got = run(days, st)
    raised_days = sorted({i // 96 for i, action, _ in got if action == "raise"})
    assert raised_days == list(range(5)), raised_days  # the first five days, before its own spans count
    # then the tap is left running after closing: 20 h without a pause
    total = days[-1]
    leak = []
    for _ in range(6 * 4 + 14 * 4):
        total += 0.015
        leak.append(round(total, 3))
    c = ctx(T0, topology=topology(()))
    out = []
    for i, t in enumerate(leak):
        out += continuous_flow(meter(T0 + (len(days) + i) * STEP, t), st, c) or []
    (d,) = out
    assert d.action.value == "raise"
    assert d.evidence["usual_longest_span_hours"] == 6.0
    assert d.evidence["threshold_hours"] == round(1.2 * 6.0 + 0.5, 2)
    assert d.evidence["hours"] >= d.evidence["threshold_hours"]


def test_however_long_a_households_routine_twelve_hours_without_a_pause_always_raise() -> None:
    got = run(salon_days(8, open_h=14))  # fourteen hours of use every day: past the cap, every day
    assert sorted({i // 96 for i, a, _ in got if a == "raise"}) == list(range(8))
    longer = {"water.continuous_flow": {"max_span_s": 20 * 3600}}  # a street that allows longer learns it
    got = run(salon_days(8, open_h=14), **longer)
    assert sorted({i // 96 for i, a, _ in got if a == "raise"}) == list(range(5))
