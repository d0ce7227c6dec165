"""The message stream: the collector's own decoder accepts everything but the deliberately malformed,
in send order, with unique seq, consistent registers and the incidents of the truth file."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from itertools import pairwise

import pytest

from collectors.codecs import decode_message
from simulators.district import build_district
from simulators.scenario import (
    CIRCUIT,
    ELDER_AWAY,
    FIRE,
    MALFORMED,
    METER_RESET,
    NUISANCE_COOKING,
    NUISANCE_STEAM,
    OFFLINE,
    TRAPPED,
)
from simulators.stream import SimMessage, Simulation, TrafficOptions
from simulators.timebase import parse_start
from tests.simulators.conftest import Run
from whistle.timeutil import DAY_MS

KINDS = {
    "smoke.fire", "smoke.fault", "smoke.tamper", "smoke.low_battery", "elevator.trapped", "elevator.fault",
    "elevator.ebike", "ebike.indoor_charging", "household.group_rental_suspected", "household.lone_elder_inactive",
    "water.continuous_flow", "device.offline", "nuisance.smoke_cooking", "nuisance.smoke_steam",
    "confounder.smoke_test", "confounder.large_family", "confounder.shop_in_flat", "confounder.visitors",
    "confounder.elder_away", "confounder.cleaning_day", "confounder.circuit_appliances", "meter_reset", "malformed",
}  # fmt: skip


def ts_of(payload: bytes) -> int | None:
    """The event time of a single (not batched) valid message."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    ts = doc.get("ts") if isinstance(doc, dict) else None
    return ts if isinstance(ts, int) else None


def truth(run: Run) -> list[dict]:
    return [json.loads(line) for line in run.truth]


def decoded(run: Run) -> list[tuple[str, object]]:
    out = []
    for m in run.messages:
        res = decode_message(m.topic, m.payload, received_at=m.send_ms + 500)
        out.append((m.topic, res))
    return out


def test_every_message_decodes_except_the_deliberately_malformed(run2d: Run) -> None:
    registered = {d["id"] for d in run2d.sim.district.registry["devices"]}
    rejected: Counter[tuple[str, str]] = Counter()
    accepted = 0
    for m in run2d.messages:
        res = decode_message(m.topic, m.payload, received_at=m.send_ms + 500)
        for r in res.rejected:
            rejected[(m.topic.split("/")[3], r.reason.value)] += 1
        if res.accepted and res.device_id not in registered:
            rejected[(res.device_id or "", "unregistered_device")] += 1
        else:
            accepted += len(res.accepted)
    expected = Counter((t["subject_ids"][0], t["details"]["reason"]) for t in truth(run2d) if t["kind"] == MALFORMED)
    assert rejected == expected
    assert len(expected) >= 50 and len(set(r for _, r in expected)) == 8
    assert accepted == run2d.sim.stats.readings


def test_messages_come_in_send_order_within_the_contracts_time_bounds(run2d: Run) -> None:
    sends = [m.send_ms for m in run2d.messages]
    assert sends == sorted(sends)
    start, end = run2d.sim.start_ms, run2d.sim.end_ms
    assert end is not None
    for m in run2d.messages[::97]:
        assert len(m.payload) <= 1024 * 1024
        if m.payload.startswith(b'{"batch"'):
            assert len(json.loads(m.payload)["batch"]) <= 1000
    for _, res in decoded(run2d):
        for obj in res.accepted:  # type: ignore[attr-defined]
            assert start <= obj.ts < end


def test_seq_is_unique_per_device_and_channel(run2d: Run) -> None:
    registered = {d["id"] for d in run2d.sim.district.registry["devices"]}
    seen: set[tuple[str, str, int]] = set()
    for _, res in decoded(run2d):
        for obj in res.accepted:  # type: ignore[attr-defined]
            if obj.device_id in registered:
                key = (obj.device_id, obj.channel.value, obj.seq)
                assert obj.seq is not None and key not in seen, key
                seen.add(key)


def test_registers_only_go_down_at_a_meter_reset(run2d: Run) -> None:
    readings: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for _, res in decoded(run2d):
        for obj in res.accepted:  # type: ignore[attr-defined]
            v = obj.values.get("total_m3", obj.values.get("total_kwh"))
            if v is not None and obj.channel.value == "data":
                readings[obj.device_id].append((obj.ts, v))
    resets = {t["subject_ids"][0]: t["start"] for t in truth(run2d) if t["kind"] == METER_RESET}
    assert len(resets) >= 3
    down = set()
    for dev, series in readings.items():
        series.sort()
        for (t1, a), (t2, b) in pairwise(series):
            if b < a:
                down.add(dev)
                assert dev in resets and t1 <= resets[dev] + 30_000 and t2 >= resets[dev], (dev, t1, t2)
    assert down == {d for d in resets if d in readings and readings[d][-1][0] > resets[d] + 900_000}


def test_nbiot_meters_upload_a_day_at_once_and_some_messages_come_late(run2d: Run) -> None:
    batches = [m for m in run2d.messages if m.payload.startswith(b'{"batch"')]
    meters = {m.topic for m in batches}
    n_h = run2d.sim.district.n_households
    assert 0.2 < sum(t.startswith("whistle/v1/water/") for t in meters) / n_h < 0.4  # --nbiot-batch 0.3
    assert 0.1 < sum(t.startswith("whistle/v1/power/") for t in meters) / n_h < 0.3  # --power-batch 0.2
    offline = {x["subject_ids"][0] for x in truth(run2d) if x["kind"] == OFFLINE}
    day_old = 0
    for m in batches:
        items = json.loads(m.payload)["batch"]
        assert m.topic.startswith(("whistle/v1/water/", "whistle/v1/power/")) and len(items) >= 4
        oldest = max(m.send_ms - it["ts"] for it in items)
        # a day's readings, or two when the meter was offline at its upload time
        assert oldest < 30 * 3600_000 or (m.topic.split("/")[3] in offline and oldest < 54 * 3600_000)
        # after the first night's upload, each batch holds about a day of readings
        if m.send_ms > run2d.sim.start_ms + 12 * 3600_000:
            day_old += max(m.send_ms - it["ts"] for it in items) > 18 * 3600_000
            assert len(items) >= 70 or m.topic.split("/")[3] in offline
    assert day_old >= len(meters)
    late = 0
    singles = 0
    for m in run2d.messages:
        ts = ts_of(m.payload)
        if ts is not None:
            singles += 1
            late += m.send_ms - ts > 30_000
    assert 0.01 < late / singles < 0.04  # --late-share 0.02


def test_offline_devices_are_silent_and_incidents_show_in_the_stream(run2d: Run) -> None:
    t = truth(run2d)
    by_device: dict[str, list[dict]] = defaultdict(list)
    for _, res in decoded(run2d):
        for obj in res.accepted:  # type: ignore[attr-defined]
            by_device[obj.device_id].append({"ts": obj.ts, "channel": obj.channel.value, **obj.values})
    offline = [x for x in t if x["kind"] == OFFLINE]
    assert len(offline) >= 10
    for x in offline:
        dev = x["subject_ids"][0]
        inside = [o for o in by_device[dev] if x["start"] <= o["ts"] < x["end"] and "online" not in o]
        assert not inside, (x, inside[:2])
    fires = [x for x in t if x["kind"] == FIRE]
    assert fires
    for x in fires:
        alarms = {
            d for d in x["details"]["detectors"]
            for o in by_device[d] if o.get("event") == "alarm" and x["start"] <= o["ts"] <= x["start"] + 600_000
        }  # fmt: skip
        assert alarms == set(x["details"]["detectors"]), x
    nuisances = [x for x in t if x["kind"] in (NUISANCE_COOKING, NUISANCE_STEAM)]
    for x in nuisances:
        events = [o for o in by_device[x["subject_ids"][0]] if x["start"] <= o["ts"] <= x["end"]]
        assert events[0]["event"] == "alarm" and events[-1]["event"] == "alarm_clear"
        assert x["end"] - x["start"] < 60_000 and x["could_be_mistaken_for"] == [FIRE]
    trapped = [x for x in t if x["kind"] == TRAPPED]
    assert trapped
    for x in trapped:
        obs = by_device[x["subject_ids"][0]]
        assert any(o.get("event") == "trapped" for o in obs if x["start"] <= o["ts"] <= x["start"] + 120_000)
        assert any(o.get("event") == "recovered" and o["ts"] == x["end"] for o in obs)
        assert not any(o.get("moving") for o in obs if x["start"] < o["ts"] < x["end"])


def test_meters_and_ebike_sensors_report_without_gaps(run2d: Run) -> None:
    t = truth(run2d)
    off = {x["subject_ids"][0] for x in t if x["kind"] == OFFLINE}
    series: dict[str, list[int]] = defaultdict(list)
    for _, res in decoded(run2d):
        for obj in res.accepted:  # type: ignore[attr-defined]
            if obj.channel.value == "data" and obj.device_type.value in ("ebike", "power") and obj.device_id not in off:
                series[obj.device_id].append(obj.ts)
    ebikes = [d["id"] for d in run2d.sim.district.registry["devices"] if d["type"] == "ebike" and d["id"] not in off]
    assert len(ebikes) >= 5
    for dev in ebikes:
        ts = sorted(series[dev])
        # every minute's end inside the two days (the one at the very end belongs to the next run)
        assert len(ts) == 2 * 1440 - 1 and {b - a for a, b in pairwise(ts)} == {60_000}, dev
    meters = [dev for dev in series if dev.startswith("PM-") and "-X" not in dev]  # not the unregistered
    assert len(meters) >= 100
    for dev in meters:
        ts = sorted(series[dev])
        assert len(ts) == 2 * 96 - 1 and {b - a for a, b in pairwise(ts)} == {900_000}, dev


def test_the_truth_file_follows_its_schema(run2d: Run) -> None:
    doc = run2d.sim.district.registry
    known = {x["id"] for sec in ("households", "buildings", "devices") for x in doc[sec]}
    t = truth(run2d)
    assert t
    starts = [x["start"] for x in t]
    assert starts == sorted(starts)
    for x in t:
        assert list(x)[:7] == ["kind", "subject_type", "subject_ids", "start", "end", "confounder",
                               "could_be_mistaken_for"]  # fmt: skip
        assert x["kind"] in KINDS and x["subject_type"] in ("household", "building", "device")
        assert x["end"] is None or x["end"] >= x["start"]
        assert x["confounder"] == (x["kind"].startswith(("confounder.", "nuisance.")))
        assert bool(x["could_be_mistaken_for"]) == x["confounder"]
        assert ("declared" in x) == (x["kind"] == ELDER_AWAY)
        if not (x["kind"] == MALFORMED and x["details"]["reason"] == "unregistered_device"):
            assert set(x["subject_ids"]) <= known, x
    kinds = Counter(x["kind"] for x in t)
    assert kinds[CIRCUIT] and kinds["household.group_rental_suspected"] >= 2


def digest(sim: Simulation) -> str:
    h = hashlib.sha256()
    for m in sim.messages():
        h.update(b"%d %s " % (m.send_ms, m.topic.encode()) + m.payload + b"\n")
    return h.hexdigest()


def test_the_same_seed_gives_the_same_stream_and_truth() -> None:
    t0 = parse_start("2026-08-10")

    def sim(seed: int) -> Simulation:
        d = build_district(60, seed=seed)
        return Simulation(d, start_ms=t0, end_ms=t0 + DAY_MS, seed=seed,
                          options=TrafficOptions(nbiot_share=0.5, late_share=0.05, malformed_share=0.01))  # fmt: skip

    a, b, c = sim(3), sim(3), sim(4)
    assert list(a.truth_lines()) == list(b.truth_lines())
    assert digest(a) == digest(b) != digest(c)


def test_a_run_can_start_mid_day_and_stay_inside_its_span() -> None:
    d = build_district(40, seed=2)
    start = parse_start("2026-08-10T13:37:00+08:00")
    sim = Simulation(d, start_ms=start, end_ms=start + 3 * 3600_000, seed=2)
    ts = [t for m in sim.messages() if (t := ts_of(m.payload)) is not None]
    assert ts and min(ts) >= start and max(ts) < start + 3 * 3600_000
    assert sim.stats.messages == len(
        list(Simulation(d, start_ms=start, end_ms=start + 3 * 3600_000, seed=2).messages())
    )


def test_options_are_checked() -> None:
    d = build_district(5, seed=1)
    with pytest.raises(ValueError, match="multiple of 60"):
        Simulation(d, start_ms=0, end_ms=DAY_MS, seed=1, options=TrafficOptions(ebike_interval_s=90))


@pytest.mark.parametrize("households", [1, 2, 7])
def test_tiny_streets_run_with_every_option(households: int) -> None:
    d = build_district(households, seed=2)
    t0 = parse_start("2026-03-02")
    opts = TrafficOptions(nbiot_share=1.0, power_batch_share=1.0, late_share=0.1, malformed_share=0.01)
    sim = Simulation(d, start_ms=t0, end_ms=t0 + 2 * DAY_MS, seed=2, options=opts)
    msgs = list(sim.messages())
    malformed = sum(json.loads(x)["kind"] == MALFORMED for x in sim.truth_lines())
    rejected = sum(bool(decode_message(m.topic, m.payload, received_at=m.send_ms).rejected) for m in msgs)
    assert msgs and sim.stats.batches >= 2 * households and rejected <= malformed


def test_meters_batch_until_an_instant_then_report_live_with_nothing_lost() -> None:
    """The demo's traffic: history in daily batches, then every reading on its own from `batch_until_ms`."""
    d = build_district(6, seed=4)
    t0 = parse_start("2026-03-02")
    until = t0 + 2 * DAY_MS + 10 * 3_600_000  # 10:00 on the third day
    end = until + 6 * 3_600_000
    batched = TrafficOptions(nbiot_share=1.0, power_batch_share=1.0, batch_until_ms=until)
    msgs = list(Simulation(d, start_ms=t0, end_ms=end, seed=4, options=batched).messages())
    plain = list(Simulation(d, start_ms=t0, end_ms=end, seed=4).messages())

    def readings(ms: list[SimMessage]) -> set[tuple[str, int]]:
        out = set()
        for m in ms:
            if m.topic.split("/")[2] in ("water", "power") and m.topic.endswith("/data"):
                doc = json.loads(m.payload)
                out |= {(m.topic, r["ts"]) for r in doc.get("batch", [doc])}
        return out

    assert readings(msgs) == readings(plain)  # the same readings, however delivered
    meters = [m for m in msgs if m.topic.split("/")[2] in ("water", "power") and m.topic.endswith("/data")]
    before = [m for m in meters if m.send_ms < until]
    after = [m for m in meters if m.send_ms >= until + 3_600_000]
    assert before and all(b'"batch"' in m.payload for m in before)  # history: daily uploads only
    assert after and not any(b'"batch"' in m.payload for m in after)  # live: one reading a message
    for m in meters:  # the batch held at the switch goes up with the meter's first reading after it
        if b'"batch"' in m.payload and m.send_ms >= until:
            assert m.send_ms < until + 3_600_000
