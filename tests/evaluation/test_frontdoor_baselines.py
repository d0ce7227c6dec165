"""The fixed-rule baselines of the front-door evaluation, on hand-built usage rows (no I/O)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

from evaluation.frontdoor.baselines import (
    daily_kwh,
    fixed_water_rule,
    litres,
    outside,
    power_only_group_rental,
    ts_ms,
)

LOCAL = timezone(timedelta(hours=8))
HOUR = 3_600_000
Q = 900_000
T0 = int(datetime(2026, 11, 3, tzinfo=LOCAL).timestamp() * 1000)


def row(ts: int, delta: float | None, interval_ms: int | None = Q) -> dict[str, object]:
    iso = datetime.fromtimestamp(ts / 1000, UTC).isoformat().replace("+00:00", "Z")
    return {"ts": iso, "total": 1.0, "delta": delta, "interval_ms": interval_ms, "reset": delta is None, "gap": False}


def test_usage_rows_become_litres_with_resets_and_the_first_row_as_nothing() -> None:
    rows = [row(T0, None, None), row(T0 + Q, 0.0023), row(T0 + 2 * Q, None), row(T0 + 3 * Q, -0.001)]
    assert litres(rows) == [(T0, 0.0), (T0 + Q, 2.3), (T0 + 2 * Q, 0.0), (T0 + 3 * Q, 0.0)]
    assert ts_ms("2026-11-02T16:00:00Z") == T0


def test_the_fixed_rule_alerts_once_when_12_hours_hold_less_than_10_litres_and_rearms_after_10_more() -> None:
    # 2 L every hour for 13 h, then nothing for 14 h, then 12 L at once, then nothing for 13 h
    series = [(T0 + h * HOUR, 2.0) for h in range(13)]
    series += [(T0 + h * HOUR, 0.0) for h in range(13, 27)]
    series += [(T0 + 27 * HOUR, 12.0)]
    series += [(T0 + h * HOUR, 0.0) for h in range(28, 41)]
    alerts = fixed_water_rule(series)
    # the window (t - 12 h, t] holds less than 10 L once the 2-litre hours 4..12 have left it but 4 remain:
    # at t = 20 h it holds hours 9..12 (8 L)
    assert alerts == [T0 + 20 * HOUR, T0 + 39 * HOUR]


def test_the_fixed_rule_waits_for_a_full_window_and_an_absence_suppresses_it() -> None:
    assert fixed_water_rule([(T0 + h * HOUR, 0.0) for h in range(12)]) == []
    assert fixed_water_rule([(T0 + h * HOUR, 0.0) for h in range(13)]) == [T0 + 12 * HOUR]
    assert outside([T0, T0 + 5 * HOUR, T0 + 9 * HOUR], [(T0 + 4 * HOUR, T0 + 6 * HOUR)]) == [T0, T0 + 9 * HOUR]


def test_daily_energy_counts_a_quarter_hour_on_the_day_it_ends_in_and_needs_80_of_96() -> None:
    day = [row(T0 + (k + 1) * Q, 0.1) for k in range(96)]  # 00:15 .. 24:00 of day 0: 96 quarters
    second = [row(T0 + 86_400_000 + (k + 1) * Q, 0.2) for k in range(79)]  # 79 quarters of day 1
    gap = [row(T0 + 2 * 86_400_000 + 3 * HOUR, 5.0, 3 * HOUR)]  # an interval after a 3-hour gap counts nowhere
    kwh = daily_kwh([*day, *second, *gap], date(2026, 11, 3), 3)
    assert math.isclose(kwh[0], 9.6)
    assert math.isnan(kwh[1]) and math.isnan(kwh[2])


def test_the_electricity_only_screen_flags_twice_the_buildings_median_on_10_of_14_days() -> None:
    days = 16
    base = {f"H{i}": [5.0] * days for i in range(5)}
    base["H0"] = [15.0 if d % 7 not in (5, 6) else 5.0 for d in range(days)]  # 3x on weekdays: 10 of 14 days
    base["H1"] = [15.0 if d < 9 else 5.0 for d in range(days)]  # 9 days only
    base["H2"][10] = math.nan  # a missing day: the median is of the others
    building = dict.fromkeys(base, "B1")
    flagged = power_only_group_rental(base, building, days)
    assert flagged == {"H0": 13}
    # a household alone in its building is its own median: never twice it
    assert power_only_group_rental({"X": [9.0] * days}, {"X": "B2"}, days) == {}


def test_the_baselines_compute_what_the_products_rules_baselines_compute() -> None:
    """Written again for the evaluator (which imports nothing of the product): the same answers on random data."""
    import numpy as np

    from rules import baselines as product
    from rules.group_rental import HouseholdDays

    rng = np.random.default_rng(14)
    for _ in range(20):
        n = int(rng.integers(40, 200))
        draws = rng.choice([0.0, 0.0, 0.0, 1.0, 3.0, 12.0], size=n)
        series = [(T0 + k * Q, float(v)) for k, v in enumerate(draws)]
        assert fixed_water_rule(series) == product.fixed_water_rule(series)
    flagged = 0
    for _ in range(10):
        households, days = 30, 21
        kwh = rng.lognormal(1.5, 1.0, (households, days))
        kwh[rng.random((households, days)) < 0.05] = np.nan
        building = rng.integers(0, 3, households)
        ids = [f"H{i:03d}" for i in range(households)]
        f = HouseholdDays(
            household_ids=ids,
            registered=np.ones(households, dtype=np.int64),
            building=building.astype(np.int64),
            area=np.zeros(households, dtype=np.int64),
            days=[str(d) for d in range(days)],
            water_l=np.zeros((households, days)),
            kwh=kwh,
            night_water_share=np.zeros((households, days)),
            night_kwh_share=np.zeros((households, days)),
        )
        theirs: dict[str, int] = {}
        for d in range(13, days):
            for hid in product.power_only_group_rental(f, day_index=d, min_days=6):
                theirs.setdefault(hid, d)
        ours = power_only_group_rental(
            {h: kwh[i].tolist() for i, h in enumerate(ids)},
            {h: str(b) for h, b in zip(ids, building, strict=True)},
            days,
            min_days=6,
        )
        assert ours == theirs
        flagged += len(ours)
    assert flagged >= 10  # the comparison covered households the screen flags, not only empty answers
