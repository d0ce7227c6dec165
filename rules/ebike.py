"""E-bike charging indoors (`ebike.indoor_charging`) from a charging-circuit sensor's 60-s power.

The circuit's power is compared with its standby level (a slowly tracked minimum). A charger shows
as a load of `min_step_w`-`max_step_w` (100-600 W; a 4 A charger peaks near 185 W) that holds its
level for hours: constant current, flat from one minute to the next to within a few per cent, then
constant voltage with the current tapering over 1-3 h, then float at a few watts (DOMAIN.md). What
else draws 40-600 W on such a circuit does not hold still:

- a television draws 40-150 W that follows the picture, 2-8 % from one minute to the next; a
  laptop, a desktop and its monitor vary as much or more with what they compute;
- kettles (1.5-2.2 kW) and heaters (0.8-2.2 kW, flat or cycling) are above the band; a rice
  cooker (500-1000 W) mostly so, and it drops to keep-warm within its cooking time: a load above
  `likely_max_w` (450 W) must hold for `cycling_confirm_min` (45 min);
- fridges and air conditioners cycle: their episodes end within tens of minutes. A circuit that has
  shown `cycling_episodes` short episodes in the last day, or a sensor in its first `warmup_h`
  hours, must hold a load for `cycling_confirm_min` too.

So a *candidate* starts when the circuit rises into the band; its *floor* (the lowest tenth of its
samples over the last ten minutes) must stay in the band and level (within `max_rise` of where it
started: a charger does not climb, a load switching between levels is not one); and its
*steadiness* is the median change from one minute to the next, over the pairs of samples where
nothing switched (a fridge's start on top of a charger is a switch, not a wobble), as a share of the
floor. A candidate that has held for `confirm_min` (8 min) with a steadiness under `steady_pct`
(0.8 %) is a charge; one whose steadiness is above `jittery_pct` (2 %) is an appliance (it is
not judged again until the circuit falls back or steps up again); in between the alarm waits, at
most `max_hold_min` (60 min) from the start of the load, and then the load is called an appliance.
A charger under a fridge is found the same way: the fridge's switching is excluded from the
steadiness, its on-phases do not move the floor. The raise's evidence says why, in numbers: the
load's watts over standby, how steady it was (% minute to minute) against the 2-8 % of a
television, for how many minutes, and how long the alarm was held for the evidence (`held_min`).

Measured with the tuning harness (scripts/tune_models.py, not the figures of record): on the CREST
source 547 television and 255 computer sessions a seed share the circuits; the ripple-and-climb
rule this replaced raised on a quarter of them (precision 0.6); see docs/RULES.md for the figures.
It clears after `stop_samples` samples back near standby. Devices that classify on board send
`charging_detected`/`charging_stopped`, taken as is.
"""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass, field

from rules.detections import detect
from rules.processor import RuleContext
from whistle.domain import AlarmKind, Channel, Detection, DetectionAction, Reading, Severity
from whistle.timeutil import DAY_MS, MINUTE_MS

IDLE, CANDIDATE, CHARGING, APPLIANCE = 0, 1, 2, 3
RING = 64  # the last samples, in tenths of a watt (an hour of a candidate and a little before)
FLOOR_SAMPLES = 10  # the floor is the lowest tenth of the last ten samples
SWITCH = 0.25  # samples more than a quarter above the load's floor have something else on top
CYCLING_MAX_W = 160.0  # what cycles on top of a charger (a fridge, DOMAIN.md: 80-150 W) when it began
ABOVE_MAX = 30  # a fridge's on-phase lifts the floor for minutes, a charger's own floor does not climb for half an hour


@dataclass(slots=True)
class EbikeState:
    last_ts: int = -1
    baseline: float = -1.0
    phase: int = IDLE
    start_ts: int = 0
    start_floor: float = 0.0  # the candidate's floor over standby when it began
    n: int = 0  # samples of the candidate
    above: int = 0  # minutes its floor has been above where it started
    low: int = 0
    peak: float = 0.0
    short: list[int] = field(default_factory=list)
    by_event: bool = False
    first_ts: int = -1
    ring: array[int] = field(default_factory=lambda: array("H", bytes(2 * RING)))
    ring_n: int = 0  # valid samples in the ring (a gap starts it over)
    ring_i: int = 0  # where the next sample goes
    appliance_floor: float = 0.0  # an appliance's floor over standby: a charger added on top steps above it


def _det(r: Reading, action: DetectionAction, ev: dict[str, object]) -> Detection:
    return detect(r, AlarmKind.EBIKE_INDOOR_CHARGING, Severity.MAJOR, action, ev)


def _push(st: EbikeState, w: float) -> None:
    st.ring[st.ring_i] = min(65535, max(0, round(w * 10)))
    st.ring_i = (st.ring_i + 1) % RING
    st.ring_n = min(st.ring_n + 1, RING)


def _last(st: EbikeState, k: int) -> list[float]:
    """The last `k` samples (W), oldest first."""
    k = min(k, st.ring_n)
    return [st.ring[(st.ring_i - k + j) % RING] / 10 for j in range(k)]


def _floor(st: EbikeState, k: int = FLOOR_SAMPLES) -> float:
    """The lowest tenth of the last `k` (at most ten) samples, over standby."""
    recent = sorted(_last(st, min(k, FLOOR_SAMPLES)))
    return recent[len(recent) // 10] - st.baseline if recent else 0.0


def steadiness(samples: list[float], base: float, floor: float) -> float | None:
    """The median change from one minute to the next of the load at its floor, as a share of the floor: over
    the pairs of samples both within a quarter of the floor (`floor` W over `base`), so that what cycles or
    boils on top of it (a fridge, a kettle) is left out; None when fewer than four such pairs are known."""
    if floor <= 0:
        return None
    top = base + floor * (1 + SWITCH)
    moves = sorted(abs(b - a) for a, b in itertools.pairwise(samples) if a <= top and b <= top)
    if len(moves) < 4:
        return None
    return moves[len(moves) // 2] / floor


def _end_episode(st: EbikeState, ts: int, short_ms: float, phase: int = IDLE) -> None:
    if ts - st.start_ts < short_ms:
        horizon = ts - DAY_MS
        st.short = [t for t in st.short if t > horizon]
        st.short.append(ts)
    st.phase = phase


def _cycling(st: EbikeState, ts: int, episodes: int) -> bool:
    """Whether the circuit has shown `episodes` short loads in the last day: something cycles on it."""
    horizon = ts - DAY_MS
    return sum(1 for t in st.short if t > horizon) >= episodes


def _start(st: EbikeState, ts: int, floor: float) -> None:
    st.phase, st.start_ts, st.start_floor, st.n, st.peak, st.above = CANDIDATE, ts, floor, 1, floor, 0


def ebike_charging(r: Reading, st: EbikeState, ctx: RuleContext) -> list[Detection] | None:
    """Raise or clear `ebike.indoor_charging` from one e-bike sensor reading."""
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
    w = float(w)
    gap = r.ts - st.last_ts if st.last_ts >= 0 else 0
    st.last_ts = r.ts
    if st.first_ts < 0:
        st.first_ts = r.ts
    short_ms = p.short_episode_min * MINUTE_MS
    if gap > p.max_gap_s * 1000:
        st.ring_n = 0  # a gap: the samples around it are not consecutive minutes
        if st.phase in (CANDIDATE, APPLIANCE):
            st.phase = IDLE
    if st.baseline < 0 or w < st.baseline:
        st.baseline = w
    _push(st, w)
    level = w - st.baseline
    if st.phase == CHARGING:
        if st.by_event:
            return None
        if level < p.min_step_w / 2:
            st.low += 1
            if st.low >= p.stop_samples:
                _end_episode(st, r.ts, short_ms)  # a short "session" marks a cycling load
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
    if st.phase == APPLIANCE:
        floor = _floor(st)
        # an appliance on the circuit: judged again once it is off, or once something steps up on top of it
        if level < p.min_step_w / 2:
            st.phase = IDLE
        elif floor >= st.appliance_floor + p.min_step_w and st.ring_n >= FLOOR_SAMPLES:
            _start(st, r.ts, floor)
        else:
            st.appliance_floor = min(st.appliance_floor, floor) if floor > 0 else st.appliance_floor
        return None
    if st.phase == CANDIDATE:
        return _candidate(r, st, ctx, level)
    # idle: track standby slowly upward (a new standby appliance), start a candidate on a step
    if level < p.min_step_w / 2:
        st.baseline += 0.05 * level
        return None
    if p.min_step_w * 0.5 <= level <= p.max_step_w:
        _start(st, r.ts, level)
    return None


def _candidate(r: Reading, st: EbikeState, ctx: RuleContext, level: float) -> list[Detection] | None:
    p = ctx.params.ebike
    short_ms = p.short_episode_min * MINUTE_MS
    st.n += 1
    st.peak = max(st.peak, level)
    if level < p.min_step_w / 2:
        _end_episode(st, r.ts, short_ms)  # it ended
        return None
    seen = st.n - 1  # the load's samples after its first (a partial minute of the step)
    if seen < 4:
        return None
    floor = _floor(st, seen)
    if seen == 4:
        st.start_floor = floor
    elif floor < st.start_floor:
        if st.start_floor - floor > CYCLING_MAX_W:
            _end_episode(st, r.ts, short_ms)  # it fell by more than a fridge: another load (a rice cooker done)
            return None
        st.start_floor = floor  # the lowest the load has been: what cycles on top of it comes and goes
    if not p.min_step_w * 0.8 <= floor <= p.max_step_w:
        _end_episode(st, r.ts, short_ms)  # its floor left the band: it was something else
        return None
    if floor > st.start_floor * (1 + p.max_rise):
        st.above += 1
        if st.above > ABOVE_MAX:
            _end_episode(st, r.ts, short_ms)  # its floor climbed for good, or switched: not a charger's
            return None
    else:
        st.above = 0
    held = r.ts - st.start_ts
    samples = _last(st, min(seen, RING))
    steady = steadiness(samples, st.baseline, st.start_floor)
    if steady is None:
        return None
    if seen >= FLOOR_SAMPLES and steady >= p.jittery_pct / 100:
        # a television, a computer: not judged again until it is off or something steps up on top of it
        st.appliance_floor = floor
        _end_episode(st, r.ts, short_ms, phase=APPLIANCE)
        return None
    cycling = _cycling(st, r.ts, p.cycling_episodes)
    young = r.ts - st.first_ts < p.warmup_h * 3_600_000  # a circuit not yet seen cycle or not
    slow = cycling or young or st.start_floor > p.likely_max_w
    hold = (p.cycling_confirm_min if slow else p.confirm_min) * MINUTE_MS
    if held < hold or st.above:
        return None  # not yet, or something on top of the load hides its floor
    if steady > p.steady_pct / 100:
        if held >= p.max_hold_min * MINUTE_MS:
            st.appliance_floor = floor  # an hour without the evidence settling: an appliance
            _end_episode(st, r.ts, short_ms, phase=APPLIANCE)
        return None  # not yet told apart: hold the alarm
    st.phase, st.low = CHARGING, 0
    pct = round(100 * steady, 2)
    return [
        _det(
            r,
            DetectionAction.RAISE,
            {
                "source": "power",
                "since": st.start_ts,
                "step_w": round(floor, 1),
                "standby_w": round(st.baseline, 1),
                "steady_pct_per_minute": pct,
                "minutes_observed": round(held / MINUTE_MS),
                "held_min": round((held - p.confirm_min * MINUTE_MS) / MINUTE_MS),
                "cycling_circuit": cycling,
                "new_sensor": young,
                "why": (
                    f"a {floor:.0f} W load over a {st.baseline:.0f} W standby, level for {held // MINUTE_MS} min and"
                    f" steady to {pct:.1f} % from one minute to the next (a charger's constant current; a television"
                    f" or a computer varies {p.jittery_pct:.0f}-8 %)"
                ),
            },
        )
    ]
