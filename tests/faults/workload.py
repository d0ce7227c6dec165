"""The fault suite's input: a small simulated street over 18 hours three days ago, in event time.

Sixteen households (water and power meters, e-bike sensors, smoke detectors) from the simulator, plus
what the suite needs to see happen: a fire confirmed by a second detector, a nuisance alarm that clears,
and a power meter silent for four hours in the middle (offline, then back). The span is days in the past,
so every timer is decided by event time and never by the wall clock (rules.processor: a backfill far
behind the clock never follows it): two runs of the same input must raise the same alarms.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from typing import Any

from simulators.district import build_district
from simulators.stream import Simulation, TrafficOptions
from simulators.timebase import ANCHOR_MS, day_start
from whistle.protocol import device_topic
from whistle.timeutil import HOUR_MS, MINUTE_MS, local_day, now_ms

HOUSEHOLDS = 20
HOURS = 18
SEED = 11
SILENT_HOURS = 4


@dataclass(frozen=True)
class Workload:
    registry: dict[str, Any]
    messages: tuple[tuple[str, bytes], ...]  # in publish order
    readings: int  # readings in them (a batch counts each of its readings)
    start_ms: int
    end_ms: int
    building_id: str
    detectors: tuple[str, ...]  # the smoke detectors of that building
    silent_meter: str

    def first(self, share: float) -> int:
        """How many messages make up the first `share` of the stream."""
        return int(len(self.messages) * share)


def _event(ts: int, device: str, event: str) -> tuple[int, str, bytes]:
    doc = {"ts": ts, "seq": ts - ANCHOR_MS, "event": event}
    return ts, device_topic("smoke", device, "event"), json.dumps(doc, separators=(",", ":")).encode()


LIVE_DETECTORS = ("SM-9001", "SM-9002", "SM-9003")  # one building each, for fires published live


def with_live_buildings(registry: dict[str, Any]) -> dict[str, Any]:
    """The district with a building per live detector, so a live fire is an incident of its own (a fire
    in the backfill's building would join that building's open fire alarm)."""
    reg = copy.deepcopy(registry)
    template = reg["buildings"][0]
    for n, device in enumerate(LIVE_DETECTORS, 1):
        bid = f"FZ-B{n:04d}"
        lon, lat = template["location"]
        reg["buildings"].append(
            {**template, "id": bid, "address": f"瑞金二路 9{n} 号", "location": [lon + n * 1e-4, lat]}
        )
        reg["devices"].append({"id": device, "type": "smoke", "building_id": bid, "location": "corridor 1F"})
    return reg


def readings_in(payload: bytes) -> int:
    if payload.startswith(b'{"batch"'):
        return len(json.loads(payload)["batch"])
    return 1


@functools.cache
def workload() -> Workload:
    """The same input every time it is asked for today (its span is anchored three local days ago)."""
    district = build_district(HOUSEHOLDS, seed=SEED)
    start = day_start(local_day(now_ms()) - 3) + 6 * HOUR_MS
    end = start + HOURS * HOUR_MS
    sim = Simulation(district, start_ms=start, end_ms=end, seed=SEED, options=TrafficOptions(ebike_interval_s=300))
    reg = with_live_buildings(district.registry)
    smoke = [d for d in district.registry["devices"] if d["type"] == "smoke" and d.get("building_id")]
    building = smoke[0]["building_id"]
    detectors = tuple(d["id"] for d in smoke if d["building_id"] == building)
    if len(detectors) < 2:
        raise AssertionError(f"the fault workload needs two detectors in {building}, the district has {detectors}")
    silent = next(d["id"] for d in reg["devices"] if d["type"] == "power")
    quiet_from, quiet_to = start + 7 * HOUR_MS, start + (7 + SILENT_HOURS) * HOUR_MS
    timed: list[tuple[int, str, bytes]] = []
    for m in sim.messages():
        device = m.topic.split("/")[3]
        if device == silent and quiet_from <= m.send_ms < quiet_to:
            continue
        timed.append((m.send_ms, m.topic, m.payload))
    fire = start + 4 * HOUR_MS
    nuisance = start + 13 * HOUR_MS
    timed += [
        _event(fire, detectors[0], "alarm"),
        _event(fire + 40_000, detectors[1], "alarm"),
        _event(nuisance, detectors[1], "alarm"),
        _event(nuisance + 2 * MINUTE_MS, detectors[1], "alarm_clear"),
    ]
    timed.sort(key=lambda m: m[0])
    messages = tuple((t, p) for _, t, p in timed)
    return Workload(
        registry=reg,
        messages=messages,
        readings=sum(readings_in(p) for _, p in messages),
        start_ms=start,
        end_ms=end,
        building_id=building,
        detectors=detectors,
        silent_meter=silent,
    )


def live_fire(device: str) -> tuple[str, bytes, int]:
    """A fire alarm from `device` now (topic, payload, its ts)."""
    ts = now_ms()
    _, topic, payload = _event(ts, device, "alarm")
    return topic, payload, ts
