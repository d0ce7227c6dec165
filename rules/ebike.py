"""E-bike charging indoors (`ebike.indoor_charging`) from a charging-circuit sensor.

The 60-s `power_w` of the circuit is compared with its standby level (a slowly tracked
minimum). A charger shows as a step of `min_step_w`–`max_step_w` (100–600 W; a 4 A charger
peaks near 185 W) that then holds steady and never climbs: constant current, then constant
voltage with the current falling, then float at a few watts (DOMAIN.md). The confounders on
such a circuit look different within minutes:

- kettles (1.5–2 kW) and heaters (1–2 kW, flat) are above the band;
- rice cookers (500–900 W) are mostly above it, and end or drop to "keep warm" within the
  cooking time; a load above `likely_max_w` (450 W, above most e-bike chargers) has to hold
  for `cycling_confirm_min` too, which outlasts a cooking cycle;
- air conditioners and fridges cycle: their samples jump between on and off, and their
  episodes end within tens of minutes. A circuit that has shown `cycling_episodes` short
  episodes in the last day has to hold a load for `cycling_confirm_min` instead of
  `confirm_min` before it is called charging — as does a sensor in its first `warmup_h` hours,
  before it has had the time to show whether a fridge cycles on its circuit.

So the rule raises once a load inside the band has held for `confirm_min` (8 min, inside the
10-min target) with no sample-to-sample step above `max_ripple` and no climb above
`max_rise` of its starting level; it clears after `stop_samples` samples back near standby.
Devices that classify on board send `charging_detected`/`charging_stopped`, taken as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.detections import detect
from rules.processor import Ctx
from whistle.domain import AlarmKind, Channel, Detection, DetectionAction, Reading, Severity

IDLE, CANDIDATE, CHARGING = 0, 1, 2
DAY_MS = 86_400_000


@dataclass(slots=True)
class EbikeState:
    last_ts: int = -1
    baseline: float = -1.0
    phase: int = IDLE
    start_ts: int = 0
    ref: float = 0.0
    prev: float = 0.0
    n: int = 0
    low: int = 0
    peak: float = 0.0
    short: list[int] = field(default_factory=list)
    by_event: bool = False
    first_ts: int = -1


def _det(r: Reading, action: DetectionAction, ev: dict[str, object]) -> Detection:
    return detect(r, AlarmKind.EBIKE_INDOOR_CHARGING, Severity.MAJOR, action, ev)


def _end_episode(st: EbikeState, ts: int, short_ms: float) -> None:
    if ts - st.start_ts < short_ms:
        horizon = ts - DAY_MS
        st.short = [t for t in st.short if t > horizon]
        st.short.append(ts)
    st.phase = IDLE


def ebike_charging(r: Reading, st: EbikeState, ctx: Ctx) -> list[Detection] | None:
    """Raise or clear `ebike.indoor_charging` from one ebike sensor reading."""
    p = ctx.params.ebike
    if not p.enabled or r.ts <= st.last_ts:
        return None
    if r.channel is Channel.EVENT:
        st.last_ts = r.ts
        event = r.values.get("event")
        if event == "charging_detected" and st.phase != CHARGING:
            st.phase, st.by_event, st.start_ts = CHARGING, True, r.ts
            return [_det(r, DetectionAction.RAISE, {"source": "device", "event": event, "since": r.ts})]
        if event == "charging_stopped" and st.phase == CHARGING:
            st.phase, st.by_event = IDLE, False
            return [
                _det(r, DetectionAction.CLEAR, {"source": "device", "event": event, "duration_ms": r.ts - st.start_ts})
            ]
        return None
    w = r.values.get("power_w")
    if not isinstance(w, int | float):
        return None
    gap = r.ts - st.last_ts if st.last_ts >= 0 else 0
    st.last_ts = r.ts
    if st.first_ts < 0:
        st.first_ts = r.ts
    w = float(w)
    if st.baseline < 0 or w < st.baseline:
        st.baseline = w
    level = w - st.baseline
    if st.phase == CHARGING:
        if st.by_event:
            return None
        if level < p.min_step_w / 2:
            st.low += 1
            if st.low >= p.stop_samples:
                _end_episode(st, r.ts, p.short_episode_min * 60_000)  # a short "session" marks a cycling load
                return [
                    _det(
                        r,
                        DetectionAction.CLEAR,
                        {"source": "power", "duration_ms": r.ts - st.start_ts, "peak_w": round(st.peak, 1)},
                    )
                ]
        else:
            st.low = 0
            st.peak = max(st.peak, level)
        return None
    if st.phase == CANDIDATE:
        if gap > p.max_gap_s * 1000 or level < p.min_step_w / 2:
            _end_episode(st, r.ts, p.short_episode_min * 60_000)
        elif level > p.max_step_w or level < p.min_step_w * 0.8:
            _end_episode(st, r.ts, p.short_episode_min * 60_000)  # left the band: it was something else
        elif st.n >= 2 and (abs(w - st.prev) > p.max_ripple * level or level > st.ref * (1 + p.max_rise)):
            _end_episode(st, r.ts, p.short_episode_min * 60_000)  # too jumpy or climbing: not a charger
        else:
            st.n += 1
            if st.n == 2:
                st.ref = level  # the first sample is a partial-minute average of the step
            st.prev = w
            st.peak = max(st.peak, level)
            horizon = r.ts - DAY_MS
            cycling = sum(1 for t in st.short if t > horizon) >= p.cycling_episodes
            young = r.ts - st.first_ts < p.warmup_h * 3_600_000  # a circuit not yet seen cycle or not
            slow = cycling or young or st.ref > p.likely_max_w
            hold = (p.cycling_confirm_min if slow else p.confirm_min) * 60_000
            if r.ts - st.start_ts >= hold:
                st.phase, st.low = CHARGING, 0
                return [
                    _det(
                        r,
                        DetectionAction.RAISE,
                        {
                            "source": "power",
                            "since": st.start_ts,
                            "step_w": round(level, 1),
                            "start_step_w": round(st.ref, 1),
                            "standby_w": round(st.baseline, 1),
                            "samples": st.n,
                            "cycling_circuit": cycling,
                            "new_sensor": young,
                        },
                    )
                ]
        return None
    # idle: track standby slowly upward (a new standby appliance), start a candidate on a step
    if level < p.min_step_w / 2:
        st.baseline += 0.05 * level
        return None
    if p.min_step_w * 0.5 <= level <= p.max_step_w:
        st.phase, st.start_ts, st.ref, st.prev, st.n, st.peak = CANDIDATE, r.ts, level, w, 1, level
    return None
