from __future__ import annotations

import numpy as np

from rules.baselines import fixed_water_rule, power_only_group_rental
from rules.group_rental import HouseholdDays

H = 3_600_000
Q = 900_000


def test_fixed_rule_alerts_once_per_dry_spell_after_a_full_window() -> None:
    wet = [(k * Q, 5.0 if k % 4 == 0 else 0.0) for k in range(96)]  # 5 L an hour: 60 L per 12 h
    dry = [(96 * Q + k * Q, 0.0) for k in range(1, 80)]
    again = [(176 * Q + k * Q, 20.0) for k in range(1, 10)]
    alerts = fixed_water_rule(wet + dry + again)
    # the last draw (5 L) is at interval 92; under 10 L within 12 h once the 15 L before it leave the window
    assert len(alerts) == 1
    assert 96 * Q < alerts[0] <= 96 * Q + 12 * H
    assert fixed_water_rule([(k * Q, 0.0) for k in range(47)]) == []  # never a full window


def test_power_only_rule_flags_the_building_outlier() -> None:
    n, d = 10, 14
    kwh = np.full((n, d), 5.0)
    kwh[2] = 14.0
    kwh[3, :9] = 14.0
    f = HouseholdDays(
        household_ids=[f"H{i}" for i in range(n)],
        registered=np.full(n, 2, dtype=np.int64),
        building=np.zeros(n, dtype=np.int64),
        area=np.zeros(n, dtype=np.int64),
        days=[str(i) for i in range(d)],
        water_l=np.full((n, d), 250.0),
        kwh=kwh,
        night_water_share=np.zeros((n, d)),
        night_kwh_share=np.zeros((n, d)),
    )
    assert power_only_group_rental(f) == ["H2"]
