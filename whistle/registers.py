"""Cumulative registers (water m³, power kWh) turned into consumption per interval.

Deltas are a function of a meter's series in event time, so they are computed where the series
is whole: in SQL over the stored readings (`whistle_usage`, migration 0002, the same rules as
here) and by stateful rules whose state is partitioned by key. Never in a collector, whose view
of one meter is partial under shared subscriptions.

A meter reports its register, not its use; use is the difference between consecutive readings
in event time. What can go wrong, and what this module says then:

- the register went down: a reset, a replacement or a rollover. Use over that interval is
  unknown, never negative: `reset=True`, `delta=None`.
- a tiny decrease (float rounding at the meter or concentrator, below `jitter`) is no use, not a
  reset: `delta=0`.
- the interval is longer than `max_gap_ms` (readings missing): the delta is still the use over
  the whole interval, but `gap=True` says its shape in time is unknown.
- the reading is older than the newest one seen for this meter (late NB-IoT batches, out-of-order
  delivery): `late=True`, `delta=None`. Its neighbours are in the stored series; rules that need
  exact usage in event time compute it there.
- the first reading of a meter: nothing to compare with, `delta=None`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from whistle.domain import DeviceType

REGISTER_FIELD = {DeviceType.WATER: "total_m3", DeviceType.POWER: "total_kwh"}
DEFAULT_MAX_GAP_MS = 2 * 3_600_000  # 15-min meters: a gap is 8 missing readings; NB-IoT batches fill in later
DEFAULT_JITTER = 1e-6


@dataclass(frozen=True, slots=True)
class RegisterPoint:
    ts: int
    total: float


@dataclass(frozen=True, slots=True)
class Usage:
    delta: float | None
    interval_ms: int | None
    reset: bool = False
    gap: bool = False
    late: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "interval_ms": self.interval_ms,
            "reset": self.reset,
            "gap": self.gap,
            "late": self.late,
        }


def usage(
    prev: RegisterPoint | None,
    ts: int,
    total: float,
    *,
    max_gap_ms: int = DEFAULT_MAX_GAP_MS,
    jitter: float = DEFAULT_JITTER,
) -> Usage:
    """The use since `prev` (the newest earlier reading of the same meter), as described above."""
    if prev is None:
        return Usage(None, None)
    if ts <= prev.ts:
        return Usage(None, None, late=True)
    interval = ts - prev.ts
    diff = total - prev.total
    gap = interval > max_gap_ms
    if diff < 0:
        if -diff <= jitter * max(1.0, abs(prev.total)):
            return Usage(0.0, interval, gap=gap)
        return Usage(None, interval, reset=True, gap=gap)
    return Usage(diff, interval, gap=gap)


def advance(prev: RegisterPoint | None, ts: int, total: float) -> RegisterPoint:
    """The newest point after seeing (ts, total): late readings do not move it back."""
    if prev is not None and ts <= prev.ts:
        return prev
    return RegisterPoint(ts, total)
