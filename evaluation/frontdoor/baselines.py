"""The fixed rules in use today, computed over usage read back through the API (`/devices/{id}/usage`).

Written again here, from their descriptions (DOMAIN.md; the product's rules/baselines.py computes
the same), so that the evaluation needs nothing but the service's public surfaces:

- `fixed_water_rule`: lone-elder care as Shanghai's Jiangsu Road and Jing'an run it: an alert when
  less than 10 L of water was used in the last 12 hours; re-armed once 10 L have flowed in a
  12-hour window again. A declared absence suppresses it as it does the model (a family that
  reported the trip is not called), so the two are compared on the same footing.
- `power_only_group_rental`: the electricity-only screen of the Jiangsu State Grid case: a
  household whose daily energy was at least twice its building's median on 10 of the 14 days of a
  window. No water, no registered occupants.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta

from evaluation.frontdoor.sources import LOCAL

HOUR_MS = 3_600_000
MIN_INTERVALS = 80  # of a day's 96 quarter hours: a day with fewer has no figure
MAX_INTERVAL_MS = 2 * HOUR_MS  # a longer interval is a gap, not a day's use


def ts_ms(value: str) -> int:
    """Epoch ms of an RFC 3339 time as the API writes it."""
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def litres(rows: Iterable[Mapping[str, object]]) -> list[tuple[int, float]]:
    """(interval end ms, litres) from a water meter's usage rows; a reset or a first row counts 0."""
    out = []
    for r in rows:
        delta = r.get("delta")
        out.append((ts_ms(str(r["ts"])), max(float(delta), 0.0) * 1000.0 if isinstance(delta, int | float) else 0.0))
    return out


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
    for ts, used in intervals:
        window.append((ts, used))
        total += used
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


def outside(times: Iterable[int], windows: Sequence[tuple[int, int]]) -> list[int]:
    """The times that fall in none of the (start, end) windows."""
    return [t for t in times if not any(lo <= t <= hi for lo, hi in windows)]


def daily_kwh(rows: Iterable[Mapping[str, object]], first_day: date, days: int) -> list[float]:
    """A power meter's energy per local day (NaN: fewer than 80 valid quarter hours that day).

    An interval belongs to the local day its end falls in, less a millisecond (00:00 closes the day before)."""
    total = [0.0] * days
    count = [0] * days
    t0 = datetime(first_day.year, first_day.month, first_day.day, tzinfo=LOCAL)
    for r in rows:
        delta, interval = r.get("delta"), r.get("interval_ms")
        if not isinstance(delta, int | float) or not isinstance(interval, int) or interval > MAX_INTERVAL_MS:
            continue
        end = datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00")) - timedelta(milliseconds=1)
        k = (end.astimezone(LOCAL).date() - t0.date()).days
        if 0 <= k < days:
            total[k] += max(float(delta), 0.0)
            count[k] += 1
    return [total[k] if count[k] >= MIN_INTERVALS else math.nan for k in range(days)]


def power_only_group_rental(
    kwh: Mapping[str, Sequence[float]],
    building: Mapping[str, str],
    days: int,
    *,
    window_days: int = 14,
    min_days: int = 10,
    ratio_to_median: float = 2.0,
) -> dict[str, int]:
    """Household -> the first day index (of a full window) on which the screen flags it."""
    by_building: dict[str, list[str]] = {}
    for hid in kwh:
        by_building.setdefault(building.get(hid, ""), []).append(hid)
    high: dict[str, list[bool]] = {hid: [False] * days for hid in kwh}
    for members in by_building.values():
        for k in range(days):
            values = [kwh[h][k] for h in members if not math.isnan(kwh[h][k])]
            if not values:
                continue
            median = statistics.median(values)
            for h in members:
                v = kwh[h][k]
                high[h][k] = not math.isnan(v) and v >= ratio_to_median * median
    flagged: dict[str, int] = {}
    for hid, days_high in high.items():
        for d in range(window_days - 1, days):
            if sum(days_high[d - window_days + 1 : d + 1]) >= min_days:
                flagged[hid] = d
                break
    return flagged
