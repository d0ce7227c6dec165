"""Rule engine benchmark: the processor alone (no I/O) on a realistic reading mix.

The mix per household follows the simulator's reporting: a water and a power meter every
15 minutes, an e-bike charging sensor every 60 s on `--ebike-share` of households (charging
some evenings), a smoke detector heartbeat a day per building; plus smoke and elevator
events on the priority lane. Readings are built before timing. Reported: readings/s through
the bulk and priority processors (median of `--runs`), the same including JSON decoding from
the bus format, and the rule state per household (pickled, and measured with tracemalloc).

    .venv/bin/python scripts/bench_rules.py --households 5000 --hours 24 --runs 5
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rules.catalog import BULK_RULES, PRIORITY_RULES
from rules.processor import PartitionState, Processor
from rules.topology import HouseholdInfo, Topology
from whistle.bus import partition_for
from whistle.domain import Channel, DeviceType, Reading
from whistle.protocol import PRIORITY_INPUTS
from whistle.serde import decode_reading, encode_reading

T0 = 1_795_000_000_000
MIN = 60_000


def build(households: int, hours: int, ebike_share: float, seed: int) -> tuple[list[Reading], Topology]:
    rng = random.Random(seed)
    topo = Topology()
    per_building = 24
    readings: list[Reading] = []
    water = [rng.uniform(0, 500) for _ in range(households)]
    power = [rng.uniform(0, 20000) for _ in range(households)]
    ebikes = {h for h in range(households) if rng.random() < ebike_share}
    charge_start = {h: rng.randrange(18 * 60, 23 * 60) for h in ebikes}
    for h in range(households):
        tags = frozenset({"lone_elder"}) if rng.random() < 0.08 else frozenset()
        topo.households[f"RJ-H{h:06d}"] = HouseholdInfo(2, tags)
    topo.grid_parent = {"RJ-G1": None}
    topo.grid_street = {"RJ-G1": "RJ"}
    for m in range(hours * 60):
        ts = T0 + m * MIN
        for h in ebikes:
            start = charge_start[h]
            charging = start <= m % 1440 < start + 300
            w = 3.0 + (180.0 * (1 - 0.0005 * (m % 1440 - start)) if charging else rng.uniform(0, 2))
            hid = f"RJ-H{h:06d}"
            readings.append(
                Reading(
                    f"EB-{h:06d}",
                    DeviceType.EBIKE,
                    Channel.DATA,
                    ts,
                    ts + 900,
                    {"power_w": round(w, 1)},
                    m,
                    hid,
                    f"RJ-B{h // per_building:04d}",
                    "RJ-G1",
                )
            )
        if m % 15 == 0:
            for h in range(households):
                hid = f"RJ-H{h:06d}"
                b = f"RJ-B{h // per_building:04d}"
                water[h] += rng.choice((0.0, 0.0, 0.0, 0.003, 0.01, 0.03))
                power[h] += rng.uniform(0.01, 0.3)
                readings.append(
                    Reading(
                        f"WM-{h:06d}",
                        DeviceType.WATER,
                        Channel.DATA,
                        ts,
                        ts + 900,
                        {"total_m3": round(water[h], 3)},
                        m,
                        hid,
                        b,
                        "RJ-G1",
                    )
                )
                readings.append(
                    Reading(
                        f"PM-{h:06d}",
                        DeviceType.POWER,
                        Channel.DATA,
                        ts,
                        ts + 900,
                        {"total_kwh": round(power[h], 2), "power_w": rng.uniform(50, 900)},
                        m,
                        hid,
                        b,
                        "RJ-G1",
                    )
                )
        if m % 1440 == 0:
            for b in range(households // per_building + 1):
                readings.append(
                    Reading(
                        f"SM-{b:04d}",
                        DeviceType.SMOKE,
                        Channel.STATUS,
                        ts,
                        ts + 900,
                        {"battery_pct": 80},
                        m,
                        None,
                        f"RJ-B{b:04d}",
                        "RJ-G1",
                    )
                )
        if m % 97 == 0:
            b = rng.randrange(households // per_building + 1)
            event = rng.choice(["alarm", "alarm_clear", "fault", "trapped", "recovered"])
            dtype = DeviceType.ELEVATOR if event in ("trapped", "recovered") else DeviceType.SMOKE
            readings.append(
                Reading(
                    f"X-{b:04d}", dtype, Channel.EVENT, ts, ts + 900, {"event": event}, m, None, f"RJ-B{b:04d}", "RJ-G1"
                )
            )
    return readings, topo


def run(readings: list[list[Reading]], topo: Topology, partitions: int) -> tuple[float, list[PartitionState]]:
    bulk = Processor(BULK_RULES, topology=topo)
    prio = Processor(PRIORITY_RULES, topology=topo)
    parts = [PartitionState() for _ in range(partitions)]
    pparts = [PartitionState() for _ in range(partitions)]
    out: list[Any] = []
    gc.collect()
    t = time.perf_counter()
    for p in range(partitions):
        part, ppart = parts[p], pparts[p]
        for r in readings[p]:
            if (r.device_type, r.channel) in PRIORITY_INPUTS:
                prio.process(ppart, r, out)
            else:
                bulk.process(part, r, out)
    return time.perf_counter() - t, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=5000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--ebike-share", type=float, default=0.1)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    readings, topo = build(args.households, args.hours, args.ebike_share, args.seed)
    by_part: list[list[Reading]] = [[] for _ in range(args.partitions)]
    for r in readings:
        by_part[partition_for(r.key.encode(), args.partitions)].append(r)
    n = len(readings)
    rates = []
    parts: list[PartitionState] = []
    for _ in range(min(args.runs, 20)):
        elapsed, parts = run(by_part, topo, args.partitions)
        rates.append(n / elapsed)

    raw = [encode_reading(r) for r in readings[: min(n, 200_000)]]
    dec = []
    for _ in range(3):
        t = time.perf_counter()
        for b in raw:
            decode_reading(b)
        dec.append(len(raw) / (time.perf_counter() - t))
    decode_rate = statistics.median(dec)
    engine_rate = statistics.median(rates)
    combined = 1 / (1 / engine_rate + 1 / decode_rate)

    pickled = sum(len(pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL)) for p in parts)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    _, parts2 = run(by_part, topo, args.partitions)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    keys = sum(len(p.states) for p in parts2)
    result = {
        "households": args.households,
        "hours": args.hours,
        "readings": n,
        "ebike_sensors": sum(1 for r in readings if r.device_type is DeviceType.EBIKE and r.ts == T0),
        "partitions": args.partitions,
        "runs": len(rates),
        "readings_per_s_median": round(engine_rate),
        "readings_per_s_all": [round(x) for x in rates],
        "decode_per_s_median": round(decode_rate),
        "with_decode_per_s": round(combined),
        "state_keys": keys,
        "state_pickled_bytes_per_household": round(pickled / args.households),
        "state_heap_bytes_per_household": round((after - before) / args.households),
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
