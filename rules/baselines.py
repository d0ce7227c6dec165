"""The fixed rules in use today (DOMAIN.md), as baselines the household models are scored against.

- `fixed_water_rule`: lone-elder care as Shanghai's Jiangsu Road and Jing'an run it — an alert
  when less than 0.01 m³ (10 L) of water was used in the last 12 hours; re-armed once 10 L
  have flowed in a 12-hour window again.
- `power_only_group_rental`: the electricity-only screen of the Jiangsu State Grid case — a
  household whose daily energy is far above its building's median, with a large daily
  peak-to-valley gap, on most days of a two-week window. No water, no registered occupants.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from rules.group_rental import HouseholdDays
from whistle.timeutil import HOUR_MS


def fixed_water_rule(
    intervals: Sequence[tuple[int, float]], *, window_ms: int = 12 * HOUR_MS, min_litres: float = 10.0
) -> list[int]:
    """Alert times for one household from (interval end ms, litres) in time order."""
    if not intervals:
        return []
    out: list[int] = []
    window: deque[tuple[int, float]] = deque()
    total = 0.0
    armed = True
    start = intervals[0][0]
    for ts, litres in intervals:
        window.append((ts, litres))
        total += litres
        while window and window[0][0] <= ts - window_ms:
            total -= window.popleft()[1]
        if ts - start < window_ms:
            continue  # not a full window yet
        if total < min_litres:
            if armed:
                out.append(ts)
                armed = False
        else:
            armed = True
    return out


def power_only_group_rental(
    f: HouseholdDays,
    *,
    day_index: int | None = None,
    window_days: int = 14,
    min_days: int = 10,
    ratio_to_median: float = 2.0,
) -> list[str]:
    """Households whose daily kWh was at least `ratio_to_median` × their building's median on
    `min_days` of the window ending at `day_index`."""
    d = len(f.days) - 1 if day_index is None else day_index
    lo = max(0, d - window_days + 1)
    kwh = f.kwh[:, lo : d + 1]
    high = np.zeros_like(kwh, dtype=bool)
    for b in np.unique(f.building):
        rows = np.flatnonzero(f.building == b)
        with np.errstate(all="ignore"):
            med = np.nanmedian(kwh[rows], axis=0)
            high[rows] = kwh[rows] >= ratio_to_median * med
    high &= ~np.isnan(kwh)
    return [f.household_ids[h] for h in np.flatnonzero(high.sum(axis=1) >= min_days).tolist()]
