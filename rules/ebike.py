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

A charger on a circuit where a fridge cycles is never steady sample to sample: the fridge's
switching ends every candidate. There the rule also reads the circuit's *floor*: the lowest sample
of each of the last three quarter hours. A fridge's off phases (it runs 30-40 % of a 35-60 min
cycle) show the floor in every quarter hour; a charger raises it by its own draw. A floor in the
band, level from quarter hour to quarter hour (within `max_envelope_spread`), where the circuit sat
at its low for at least five minutes of each quarter hour (a load wandering in the band only
touches its low), is a charge, raised after about three quarter hours.
Devices that classify on board send `charging_detected`/`charging_stopped`, taken as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.detections import detect
from rules.processor import RuleContext
from whistle.domain import AlarmKind, Channel, Detection, DetectionAction, Reading, Severity
from whistle.timeutil import DAY_MS

IDLE, CANDIDATE, CHARGING = 0, 1, 2
QUARTER_MS = 900_000
ENV_BLOCKS = 3  # whole quarter hours under the envelope: a fridge's cycle (35-60 min) shows an off phase
ENV_FLAT_SAMPLES = 5  # minutes of each quarter hour at its low: a floor, not a wandering load touching it
ENV_NEAR_W, ENV_NEAR = 5.0, 0.05  # "at the low": within 5 W + 5 % of the load above standby


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
    # the circuit's lower envelope: the lowest sample of each of the last quarter hours
    env_blocks: list[float] = field(default_factory=list)
    env_flat: list[int] = field(default_factory=list)  # per block: samples that sat at its low
    env_cur: float = -1.0
    env_n: int = 0
    env_block: int = -1


def _det(r: Reading, action: DetectionAction, ev: dict[str, object]) -> Detection:
    return detect(r, AlarmKind.EBIKE_INDOOR_CHARGING, Severity.MAJOR, action, ev)


def _end_episode(st: EbikeState, ts: int, short_ms: float) -> None:
    if ts - st.start_ts < short_ms:
        horizon = ts - DAY_MS
        st.short = [t for t in st.short if t > horizon]
        st.short.append(ts)
    st.phase = IDLE


def _cycling(st: EbikeState, ts: int, episodes: int) -> bool:
    """Whether the circuit has shown `episodes` short loads in the last day: something cycles on it."""
    horizon = ts - DAY_MS
    return sum(1 for t in st.short if t > horizon) >= episodes


def _envelope(st: EbikeState, ts: int, w: float, standby: float) -> float | None:
    """The lowest sample of the last `ENV_BLOCKS` whole quarter hours and the current one: what is on the
    circuit all the time, under whatever cycles on top (a fridge's off phases); None until known, or
    when a quarter hour only touched its low now and then (a load wandering in the band, not a floor)."""
    block = ts // QUARTER_MS
    if block != st.env_block:
        if st.env_block >= 0 and block == st.env_block + 1:
            st.env_blocks.append(st.env_cur)
            st.env_flat.append(st.env_n)
            del st.env_blocks[:-ENV_BLOCKS], st.env_flat[:-ENV_BLOCKS]
        else:
            st.env_blocks.clear()  # a gap: start over
            st.env_flat.clear()
        st.env_block, st.env_cur, st.env_n = block, w, 1
    else:
        near = ENV_NEAR_W + ENV_NEAR * max(0.0, st.env_cur - standby)
        if w < st.env_cur - near:
            st.env_cur, st.env_n = w, 1
        elif w <= st.env_cur + near:
            st.env_cur, st.env_n = min(st.env_cur, w), st.env_n + 1
    if len(st.env_blocks) < ENV_BLOCKS or min(st.env_flat) < ENV_FLAT_SAMPLES:
        return None
    return min(st.env_cur, *st.env_blocks)


def ebike_charging(r: Reading, st: EbikeState, ctx: RuleContext) -> list[Detection] | None:
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
    envelope = _envelope(st, r.ts, w, st.baseline)
    floor = -1.0 if envelope is None or st.phase == CHARGING else envelope - st.baseline
    if p.min_step_w <= floor <= p.max_step_w and _cycling(st, r.ts, p.cycling_episodes):
        top = max(st.env_cur, *st.env_blocks) - st.baseline
        if top <= floor * (1 + p.max_envelope_spread):
            # On a circuit where something cycles: a load in the band that has not left it for three
            # quarter hours, whatever cycled on top, and held level under it: a charger under a fridge.
            # A floor that jumps from one quarter hour to the next is not a charger's. (Two cycling loads
            # whose off phases always miss each other can still leave a level floor: a known limit.)
            since = (st.env_block - ENV_BLOCKS) * QUARTER_MS
            st.phase, st.low, st.start_ts, st.peak, st.by_event = CHARGING, 0, since, floor, False
            return [
                _det(
                    r,
                    DetectionAction.RAISE,
                    {
                        "source": "power_envelope",
                        "since": since,
                        "step_w": round(floor, 1),
                        "standby_w": round(st.baseline, 1),
                        "cycling_circuit": True,
                    },
                )
            ]
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
            cycling = _cycling(st, r.ts, p.cycling_episodes)
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
