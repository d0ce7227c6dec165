"""The simulator's pure core: a district, a seed and options in; device messages out, in send order.

`Simulation.messages()` yields `SimMessage(send_ms, topic, payload)` for every device of the
district over the run's span, ordered by the simulated instant the device sends it (`send_ms`):
event time plus a little network latency, or much later for NB-IoT meters uploading a day's
readings in one batch and for the share of messages delivered late (out of order). No wall
clock and no global random state: the same district, seed, span and options give the same
messages, byte for byte. Publishing them (paced live, or as fast as the broker takes them) is
live.py's business.

What each device sends (CONTRACT.md §1):

| device | channel | when |
|---|---|---|
| water meter | data `{"ts","seq","total_m3"}` | every 15 min (NB-IoT share: one `{"batch": [...]}` a day) |
| water meter | status `{"ts","seq","battery_pct","rssi_dbm"}` | daily |
| power meter | data `{"ts","seq","total_kwh","power_w"}` | every 15 min |
| power meter, e-bike sensor | status `{"ts","seq","rssi_dbm"}` | daily |
| e-bike sensor | data `{"ts","seq","power_w"}` | every 60 s (mean over the interval) |
| elevator | data `{"ts","seq","floor","moving","door",...}` | at each departure and arrival |
| elevator | status `{"ts","seq","online"}` | every 5 min |
| elevator, smoke | event | incidents (scenario.py) |
| smoke | status `{"ts","seq","battery_pct","rssi_dbm"}` | daily; `low_battery` event while below 20 % |

`seq` counts intervals from 2020-01-01 (+08:00) for periodic data and milliseconds for
events and status, so replaying the same time gives the same seq (the collector drops the
duplicates) and separate runs never collide.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from simulators.behaviour import DaySignals, elevator_trips, simulate_day
from simulators.district import District
from simulators.scenario import MALFORMED, METER_RESET, OFFLINE, Incident, Scenario
from simulators.timebase import ANCHOR_MS, SLOT_MS, day_start
from whistle.protocol import device_topic
from whistle.timeutil import DAY_MS, HOUR_MS, MINUTE_MS, local_day

STREAM = 40
MAX_BATCH = 1000


class SimMessage(NamedTuple):
    """One MQTT message as the device sends it, at simulated instant `send_ms`."""

    send_ms: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class TrafficOptions:
    """How the traffic is delivered (the district and scenario say what happens)."""

    nbiot_share: float = 0.0  # water meters on NB-IoT, uploading their readings once a day
    power_batch_share: float = 0.0  # power meters whose readings the utility shares once a day, in one batch
    # batching meters batch only readings before this instant: they upload what they hold with their first
    # reading from it on and deliver every reading on its own after it (the demo: history in daily batches, then live)
    batch_until_ms: int | None = None
    late_share: float = 0.0  # messages delivered late, out of order
    late_median_s: float = 120.0
    late_max_s: float = 6 * 3600.0
    malformed_share: float = 0.0  # extra malformed messages, as a share of all messages
    ebike_interval_s: int = 60  # e-bike sensors' sampling interval (a multiple of 60)
    latency_ms: tuple[int, int] = (150, 2500)  # device to broker


@dataclass(slots=True)
class StreamStats:
    messages: int = 0
    readings: int = 0
    malformed: int = 0
    late: int = 0
    batches: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def expected_messages_per_day(district: District, options: TrafficOptions) -> float:
    """About how many messages a day the district sends (to turn a malformed share into a rate)."""
    d = district
    n_h = d.n_households
    water = n_h * (96 * (1 - options.nbiot_share) + options.nbiot_share + 1)
    power = n_h * (96 * (1 - options.power_batch_share) + options.power_batch_share + 1)
    ebike = len(d.ebikes.ids) * (86_400 / options.ebike_interval_s + 1)
    bp = d.params.behaviour
    elevators = sum(288 + 2 * bp.trips_per_household * int(h) for h in d.elevators.households)
    return float(water + power + ebike + elevators + len(d.smoke.ids) * 1.02)


class Simulation:
    """A run over [start_ms, end_ms): its truth and its messages (end None: until stopped)."""

    def __init__(
        self,
        district: District,
        *,
        start_ms: int,
        end_ms: int | None,
        seed: int,
        options: TrafficOptions | None = None,
    ) -> None:
        self.district = district
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.seed = seed
        self.options = options or TrafficOptions()
        if self.options.ebike_interval_s % 60 or self.options.ebike_interval_s <= 0:
            raise ValueError("the e-bike sampling interval must be a positive multiple of 60 s")
        self.scenario = Scenario(
            district,
            start_ms=start_ms,
            end_ms=end_ms,
            seed=seed,
            malformed_per_day=self.options.malformed_share * expected_messages_per_day(district, self.options),
        )
        self.stats = StreamStats()

    def truth_lines(self) -> Iterator[str]:
        """The truth file (JSON lines), for a bounded run."""
        return self.scenario.truth_lines()

    def messages(self) -> Iterator[SimMessage]:
        """Every message of the run, ordered by `send_ms`."""
        return _Emitter(self).run()


class _Emitter:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        d = sim.district
        self.d = d
        self.o = sim.options
        self.stats = sim.stats
        rng = np.random.default_rng([sim.seed, STREAM])
        n_h = d.n_households
        self.water_reg = rng.uniform(20.0, 900.0, n_h) * 1000.0  # litres
        self.power_reg = rng.uniform(1000.0, 40_000.0, n_h) * 1000.0  # Wh
        self.meter_offset = rng.integers(0, 20_000, n_h)  # meter clocks a few seconds off the quarter
        self.nbiot = rng.random(n_h) < self.o.nbiot_share
        self.upload_at = rng.integers(1 * 3600_000, 5 * 3600_000, n_h)  # NB-IoT upload, ms after midnight
        self.status_at = rng.integers(0, DAY_MS, (n_h, 2))
        self.rssi = rng.integers(-115, -65, n_h)
        self.water_battery = rng.uniform(40.0, 100.0, n_h)
        n_e = len(d.ebikes.ids)
        self.eb_offset = rng.integers(0, 5000, n_e)
        self.eb_status_at = rng.integers(0, DAY_MS, n_e)
        self.el_phase = rng.integers(0, 300_000, len(d.elevators.ids))
        self.power_batch = rng.random(n_h) < self.o.power_batch_share
        self.power_upload_at = rng.integers(2 * 3600_000, 6 * 3600_000, n_h)
        self.buffers: dict[int, list[bytes]] = {}
        self.off_water: set[int] = set()
        self.off_power: set[int] = set()
        self.heap: list[tuple[int, int, str, bytes]] = []
        self.n = 0
        self.water_topic = [device_topic("water", d.water_id(h), "data") for h in range(n_h)]
        self.power_topic = [device_topic("power", d.power_id(h), "data") for h in range(n_h)]
        self.eb_topic = [device_topic("ebike", i, "data") for i in d.ebikes.ids]

    # helpers -----------------------------------------------------------------------------------

    def _push(self, out: list[tuple[int, int, str, bytes]], send: int, tp: str, payload: bytes, hour_end: int) -> None:
        self.n += 1
        item = (send, self.n, tp, payload)
        if send < hour_end:
            out.append(item)
        else:
            heapq.heappush(self.heap, item)

    def run(self) -> Iterator[SimMessage]:
        sim = self.sim
        day = local_day(sim.start_ms)
        while sim.end_ms is None or day_start(day) < sim.end_ms:
            yield from self._day(day)
            day += 1
        end = sim.end_ms if sim.end_ms is not None else day_start(day)
        for k, buf in sorted(self.buffers.items()):  # batching meters upload what they hold at the end
            if buf:
                self._batches(k, buf, end, [], 0)
        while self.heap:
            send, _, tp, payload = heapq.heappop(self.heap)
            self.stats.messages += 1
            yield SimMessage(send, tp, payload)

    def _day(self, day: int) -> Iterator[SimMessage]:
        sim, d = self.sim, self.d
        t0 = day_start(day)
        lo = max(sim.start_ms, t0)
        hi = t0 + DAY_MS if sim.end_ms is None else min(sim.end_ms, t0 + DAY_MS)
        incidents = sim.scenario.active(t0, t0 + DAY_MS)
        sig = simulate_day(d, incidents, day, sim.seed)
        rng = np.random.default_rng([sim.seed, STREAM, day])
        water_vals, power_vals = self._registers(sig, incidents, t0)
        offline: dict[str, list[tuple[int, int]]] = {}
        n_h = d.n_households
        self.off_water.clear()
        self.off_power.clear()
        for inc in incidents:
            if inc.kind == OFFLINE:
                offline.setdefault(inc.subject_ids[0], []).append((inc.start, inc.end or t0 + DAY_MS))
                if inc.index < n_h:
                    self.off_water.add(inc.index)
                elif inc.index < 2 * n_h:
                    self.off_power.add(inc.index - n_h)
        trips = [elevator_trips(d, incidents, day, sim.seed, e) for e in range(len(d.elevators.ids))]
        events = sorted(
            (ev for inc in incidents for ev in inc.events if lo <= ev[0] < hi),
            key=lambda ev: (ev[0], ev[1]),
        )
        malformed = [inc for inc in incidents if inc.kind == MALFORMED and lo <= inc.start < hi]
        ev_i = 0
        mal_i = 0
        for hour in range(24):
            h0 = t0 + hour * HOUR_MS
            h1 = h0 + HOUR_MS
            if h1 <= lo or h0 >= hi:
                continue
            out: list[tuple[int, int, str, bytes]] = []
            # readings at the end of an interval may fall just past midnight: they close this day's last
            # interval, so only the run's end bounds them
            span_hi = sim.end_ms if sim.end_ms is not None else t0 + 2 * DAY_MS
            self._meters(rng, day, t0, hour, water_vals, power_vals, sig, offline, lo, span_hi, out, h1)
            self._ebikes(rng, t0, hour, sig, offline, lo, span_hi, out, h1)
            self._elevators(rng, trips, h0, h1, offline, lo, hi, out)
            self._statuses(rng, day, t0, h0, h1, offline, lo, hi, out)
            while ev_i < len(events) and events[ev_i][0] < h1:
                ts, tp, fields = events[ev_i]
                ev_i += 1
                doc = {"ts": ts, "seq": ts - ANCHOR_MS, **fields}
                if "online" in fields and len(fields) == 1 and not fields["online"]:
                    doc = {"ts": ts, "online": False}  # the MQTT will, as the broker would publish it
                did = tp.split("/")[3]
                if _off(offline, did, ts) and "online" not in fields:
                    continue
                self._send(rng, out, ts, tp, json.dumps(doc, separators=(",", ":")).encode(), h1, tp.split("/")[2])
            while mal_i < len(malformed) and malformed[mal_i].start < h1:
                inc = malformed[mal_i]
                mal_i += 1
                tp, payload = malformed_message(inc)
                self.stats.malformed += 1
                self._push(out, inc.start, tp, payload, h1)
            while self.heap and self.heap[0][0] < h1:
                out.append(heapq.heappop(self.heap))
            out.sort()
            self.stats.messages += len(out)
            for send, _, tp, payload in out:
                yield SimMessage(send, tp, payload)

    def _send(
        self,
        rng: np.random.Generator,
        out: list[tuple[int, int, str, bytes]],
        ts: int,
        tp: str,
        payload: bytes,
        hour_end: int,
        kind: str,
    ) -> None:
        lat = int(rng.integers(*self.o.latency_ms))
        if self.o.late_share and rng.random() < self.o.late_share:
            lat = _late_delay(rng, self.o)
            self.stats.late += 1
        self.stats.readings += 1
        self.stats.by_type[kind] = self.stats.by_type.get(kind, 0) + 1
        self._push(out, ts + lat, tp, payload, hour_end)

    def _registers(self, sig: DaySignals, incidents: list[Incident], t0: int) -> tuple[np.ndarray[Any, Any], ...]:
        """Register values at the end of each slot (litres, Wh), with meter resets applied."""
        n_h = self.d.n_households
        water = self.water_reg[:, None] + np.cumsum(sig.water_l, axis=1)
        power = self.power_reg[:, None] + np.cumsum(sig.power_wh, axis=1)
        for inc in incidents:
            if inc.kind != METER_RESET or not t0 <= inc.start < t0 + DAY_MS:
                continue
            k = (inc.start - t0) // SLOT_MS  # readings from the end of slot k on come after the reset
            vals, h = (water, inc.index) if inc.index < n_h else (power, inc.index - n_h)
            before = vals[h, k - 1] if k > 0 else (self.water_reg if vals is water else self.power_reg)[h]
            vals[h, k:] -= before
        self.water_reg = water[:, -1].copy()
        self.power_reg = power[:, -1].copy()
        return water, power

    def _meters(
        self,
        rng: np.random.Generator,
        day: int,
        t0: int,
        hour: int,
        water: np.ndarray[Any, Any],
        power: np.ndarray[Any, Any],
        sig: DaySignals,
        offline: dict[str, list[tuple[int, int]]],
        lo: int,
        hi: int,
        out: list[tuple[int, int, str, bytes]],
        h1: int,
    ) -> None:
        d, o = self.d, self.o
        n_h = d.n_households
        off_w, off_p = self.off_water, self.off_power
        for j in range(hour * 4, hour * 4 + 4):
            boundary = t0 + (j + 1) * SLOT_MS
            seq = (boundary - ANCHOR_MS) // SLOT_MS
            # batch uploads due before this reading: NB-IoT water meters, the utility's power data
            for base, batching, upload_at, ids in (
                (0, self.nbiot, self.upload_at, d.water_id),
                (n_h, self.power_batch, self.power_upload_at, d.power_id),
            ):
                due = batching & (upload_at > j * SLOT_MS) & (upload_at <= (j + 1) * SLOT_MS)
                for h in np.flatnonzero(due).tolist():
                    up = t0 + int(upload_at[h])
                    buf = self.buffers.get(base + h)
                    if buf and lo <= up < hi and not _off(offline, ids(h), up):
                        self._batches(base + h, buf, up, out, h1)
            ts = boundary + self.meter_offset
            if boundary + 20_000 <= lo or boundary >= hi:
                continue
            lat = rng.integers(o.latency_ms[0], o.latency_ms[1], (2, n_h))
            late = rng.random((2, n_h)) < o.late_share if o.late_share else None
            w_vals = (water[:, j] / 1000.0).tolist()
            p_vals = (power[:, j] / 1000.0).tolist()
            p_w = (sig.power_wh[:, j] * 4.0).tolist()
            ts_l = ts.tolist()
            lat_l = lat.tolist()
            for h in range(n_h):
                t = ts_l[h]
                if not lo <= t < hi:
                    continue
                if h not in off_w or not _off(offline, d.water_id(h), t):
                    payload = b'{"ts":%d,"seq":%d,"total_m3":%.3f}' % (t, seq, w_vals[h])
                    self._meter(rng, out, t, h, 0, bool(self.nbiot[h]), self.water_topic[h], payload, lat_l, late, h1)
                if h not in off_p or not _off(offline, d.power_id(h), t):
                    payload = b'{"ts":%d,"seq":%d,"total_kwh":%.2f,"power_w":%d}' % (t, seq, p_vals[h], round(p_w[h]))
                    self._meter(
                        rng, out, t, h, 1, bool(self.power_batch[h]), self.power_topic[h], payload, lat_l, late, h1
                    )

    def _meter(
        self,
        rng: np.random.Generator,
        out: list[tuple[int, int, str, bytes]],
        t: int,
        h: int,
        meter: int,
        batched: bool,
        topic: str,
        payload: bytes,
        lat_l: list[list[int]],
        late: np.ndarray[Any, Any] | None,
        h1: int,
    ) -> None:
        """One meter reading (0 water, 1 power): into the day's batch, or delivered on its own."""
        until = self.o.batch_until_ms
        if batched and (until is None or t < until):
            self.buffers.setdefault(meter * self.d.n_households + h, []).append(payload)
            self.stats.readings += 1
            return
        if (
            batched and until is not None
        ):  # past `batch_until_ms`: what the meter holds goes up now, then it reports live
            key = meter * self.d.n_households + h
            buf = self.buffers.get(key)
            if buf:
                self._batches(key, buf, int(until), out, h1)
        is_late = late is not None and late[meter, h]
        self._deliver(rng, out, t, lat_l[meter][h], is_late, topic, payload, h1, ("water", "power")[meter])

    def _deliver(
        self,
        rng: np.random.Generator,
        out: list[tuple[int, int, str, bytes]],
        ts: int,
        lat: int,
        late: bool,
        tp: str,
        payload: bytes,
        h1: int,
        kind: str,
    ) -> None:
        if late:
            lat = _late_delay(rng, self.o)
            self.stats.late += 1
        self.stats.readings += 1
        self.stats.by_type[kind] = self.stats.by_type.get(kind, 0) + 1
        self.n += 1
        item = (ts + lat, self.n, tp, payload)
        if item[0] < h1:
            out.append(item)
        else:
            heapq.heappush(self.heap, item)

    def _batches(self, k: int, buf: list[bytes], up: int, out: list[tuple[int, int, str, bytes]], h1: int) -> None:
        """Upload a meter's buffered readings (k: a water meter's household, or n + a power meter's)."""
        n_h = self.d.n_households
        h, kind = (k, "water") if k < n_h else (k - n_h, "power")
        tp = self.water_topic[h] if kind == "water" else self.power_topic[h]
        for i in range(0, len(buf), MAX_BATCH):
            payload = b'{"batch":[' + b",".join(buf[i : i + MAX_BATCH]) + b"]}"
            self.stats.batches += 1
            self.stats.by_type[kind] = self.stats.by_type.get(kind, 0) + 1
            self._push(out, up + int(self.meter_offset[h]), tp, payload, h1)
        buf.clear()

    def _ebikes(
        self,
        rng: np.random.Generator,
        t0: int,
        hour: int,
        sig: DaySignals,
        offline: dict[str, list[tuple[int, int]]],
        lo: int,
        hi: int,
        out: list[tuple[int, int, str, bytes]],
        h1: int,
    ) -> None:
        d, o = self.d, self.o
        n_e = len(d.ebikes.ids)
        if not n_e:
            return
        step = o.ebike_interval_s // 60
        m0 = hour * 60
        block = sig.circuit_w[:, m0 : m0 + 60]
        for k in range(0, 60, step):
            m = m0 + k
            if m % step:
                continue
            end = t0 + (m + step) * MINUTE_MS
            seq = (end - ANCHOR_MS) // (o.ebike_interval_s * 1000)
            vals = block[:, k : k + step].mean(axis=1).tolist()
            lat = rng.integers(o.latency_ms[0], o.latency_ms[1], n_e).tolist()
            late = (rng.random(n_e) < o.late_share).tolist() if o.late_share else None
            for e in range(n_e):
                t = end + int(self.eb_offset[e])
                if not lo <= t < hi:
                    continue
                did = d.ebikes.ids[e]
                if offline and _off(offline, did, t):
                    continue
                payload = b'{"ts":%d,"seq":%d,"power_w":%.1f}' % (t, seq, vals[e])
                self._deliver(rng, out, t, lat[e], bool(late and late[e]), self.eb_topic[e], payload, h1, "ebike")

    def _elevators(
        self,
        rng: np.random.Generator,
        trips: list[Any],
        h0: int,
        h1: int,
        offline: dict[str, list[tuple[int, int]]],
        lo: int,
        hi: int,
        out: list[tuple[int, int, str, bytes]],
    ) -> None:
        d = self.d
        for e, tr in enumerate(trips):
            did = d.elevators.ids[e]
            tp_data = device_topic("elevator", did, "data")
            sel = np.flatnonzero((tr.depart >= max(h0, lo)) & (tr.depart < min(h1, hi)))
            for i in sel.tolist():
                t = int(tr.depart[i])
                if offline and _off(offline, did, t):
                    continue
                a = int(tr.arrive[i])
                dep = b'{"ts":%d,"seq":%d,"floor":%d,"moving":true,"door":"closed","load_pct":%d,"speed_mps":%.2f}' % (
                    t,
                    t - ANCHOR_MS,
                    int(tr.origin[i]),
                    int(tr.load_pct[i]),
                    tr.speed_mps,
                )
                arr = b'{"ts":%d,"seq":%d,"floor":%d,"moving":false,"door":"open","load_pct":%d,"speed_mps":0}' % (
                    a,
                    a - ANCHOR_MS,
                    int(tr.dest[i]),
                    int(tr.load_pct[i]),
                )
                self._send(rng, out, t, tp_data, dep, h1, "elevator")
                if a < hi:
                    self._send(rng, out, a, tp_data, arr, h1, "elevator")
            tp_status = device_topic("elevator", did, "status")
            t = h0 + int(self.el_phase[e])
            while t < h1:
                if lo <= t < hi and not (offline and _off(offline, did, t)):
                    self._send(
                        rng, out, t, tp_status, b'{"ts":%d,"seq":%d,"online":true}' % (t, t - ANCHOR_MS), h1, "elevator"
                    )
                t += d.params.behaviour.elevator_heartbeat_s * 1000

    def _statuses(
        self,
        rng: np.random.Generator,
        day: int,
        t0: int,
        h0: int,
        h1: int,
        offline: dict[str, list[tuple[int, int]]],
        lo: int,
        hi: int,
        out: list[tuple[int, int, str, bytes]],
    ) -> None:
        """Daily heartbeats: smoke detectors (battery, and `low_battery` while low), meters, e-bike sensors."""
        d = self.d
        sc = self.sim.scenario
        sm = d.smoke
        thr = d.params.behaviour.low_battery_pct
        a, b = max(h0, lo), min(h1, hi)
        if b <= a:
            return
        ph = sm.phase_s * 1000 + t0
        for i in np.flatnonzero((ph >= a) & (ph < b)).tolist():
            t = int(ph[i])
            did = sm.ids[i]
            if offline and _off(offline, did, t):
                continue
            bat = max(0, round(sc.battery(i, day)))
            rssi = int(self.rssi[i % len(self.rssi)])
            self._send(
                rng,
                out,
                t,
                device_topic("smoke", did, "status"),
                b'{"ts":%d,"seq":%d,"battery_pct":%d,"rssi_dbm":%d}' % (t, t - ANCHOR_MS, bat, rssi),
                h1,
                "smoke",
            )
            if bat < thr:
                t2 = t + 1000
                self._send(
                    rng,
                    out,
                    t2,
                    device_topic("smoke", did, "event"),
                    b'{"ts":%d,"seq":%d,"event":"low_battery"}' % (t2, t2 - ANCHOR_MS),
                    h1,
                    "smoke",
                )
        for col, kind in ((0, "water"), (1, "power")):
            st = self.status_at[:, col] + t0
            for h in np.flatnonzero((st >= a) & (st < b)).tolist():
                t = int(st[h])
                did = d.water_id(h) if kind == "water" else d.power_id(h)
                if offline and _off(offline, did, t):
                    continue
                if kind == "water":
                    bat = round(float(self.water_battery[h]))
                    payload = b'{"ts":%d,"seq":%d,"battery_pct":%d,"rssi_dbm":%d}' % (
                        t,
                        t - ANCHOR_MS,
                        bat,
                        int(self.rssi[h]),
                    )
                else:
                    payload = b'{"ts":%d,"seq":%d,"rssi_dbm":%d}' % (t, t - ANCHOR_MS, int(self.rssi[h]))
                self._send(rng, out, t, device_topic(kind, did, "status"), payload, h1, kind)
        st = self.eb_status_at + t0
        for e in np.flatnonzero((st >= a) & (st < b)).tolist():
            t = int(st[e])
            did = d.ebikes.ids[e]
            if offline and _off(offline, did, t):
                continue
            payload = b'{"ts":%d,"seq":%d,"rssi_dbm":%d}' % (t, t - ANCHOR_MS, int(self.rssi[e % len(self.rssi)]))
            self._send(rng, out, t, device_topic("ebike", did, "status"), payload, h1, "ebike")


def _off(offline: dict[str, list[tuple[int, int]]], device_id: str, ts: int) -> bool:
    return any(a <= ts < b for a, b in offline.get(device_id, ()))


def _late_delay(rng: np.random.Generator, o: TrafficOptions) -> int:
    return int(min(o.late_max_s, o.late_median_s * float(rng.lognormal(0.0, 1.2))) * 1000)


_DATA_FIELD = {"water": "total_m3", "power": "total_kwh", "ebike": "power_w"}


def malformed_message(inc: Incident) -> tuple[str, bytes]:
    """A deliberately bad message for a `malformed` incident (its reason says which dead letter it makes)."""
    reason = str(inc.details["reason"])
    dtype = str(inc.details["device_type"])
    did = inc.subject_ids[0]
    ts = inc.start
    channel = "status" if dtype == "smoke" else "data"
    tp = device_topic(dtype, did, channel)
    field_ = _DATA_FIELD.get(dtype)
    good: dict[str, Any]
    if dtype == "smoke":
        good = {"ts": ts, "battery_pct": 80}
    elif dtype == "elevator":
        good = {"ts": ts, "floor": 3, "moving": False, "door": "open"}
    else:
        good = {"ts": ts, field_ or "value": 12.5}
    key = "battery_pct" if dtype == "smoke" else ("door" if dtype == "elevator" else str(field_))
    if reason == "not_json":
        return tp, json.dumps(good, separators=(",", ":")).encode()[:-4]
    if reason == "not_utf8":
        return tp, b"\xff\xfe" + json.dumps(good).encode()
    if reason == "wrong_type":
        bad = dict(good)
        bad["floor" if dtype == "elevator" else key] = "n/a"
        return tp, json.dumps(bad).encode()
    if reason == "out_of_range":
        bad = dict(good)
        bad[key] = {"smoke": 140, "elevator": "ajar"}.get(dtype, -5.0)
        return tp, json.dumps(bad).encode()
    if reason == "missing_field":
        return tp, json.dumps({"ts": ts, "seq": 1}).encode()
    if reason == "bad_timestamp":
        bad = dict(good)
        bad["ts"] = "yesterday evening"
        return tp, json.dumps(bad).encode()
    if reason == "unknown_channel":
        return device_topic(dtype, did, "config"), json.dumps(good).encode()
    return tp, json.dumps(good).encode()  # unregistered_device: a valid message from an unknown id
