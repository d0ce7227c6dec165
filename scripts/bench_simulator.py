#!/usr/bin/env python3
"""Benchmark: the simulator's load mode into a real Mosquitto, and how fast it generates traffic.

1. generation: `Simulation.messages()` for a district over a day, no I/O (messages/s and
   household-days/s), and the truth file's planning time.
2. load: `whistle simulate --load RATE` run as a user runs it (its own process), into a private
   Mosquitto on a loopback port, at QoS 1 and QoS 0, at a target rate (default 20,000 msg/s) and
   flat out; optionally with `mosquitto_sub` subscribed to everything (the broker then routes
   each message too). The figures are the command's own JSON report: messages acknowledged
   (QoS 1: PUBACKs received) per second from the first write to the last PUBACK, and the
   simulator process's CPU seconds over that time.

Each configuration runs `--repeat` times (default 3); the medians are printed and written.

    .venv/bin/python scripts/bench_simulator.py
    .venv/bin/python scripts/bench_simulator.py --repeat 5 --json-out /tmp/bench_sim.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.mosquitto import start_mosquitto  # noqa: E402
from simulators.district import build_district  # noqa: E402
from simulators.stream import Simulation, TrafficOptions  # noqa: E402
from simulators.timebase import parse_start  # noqa: E402
from whistle.timeutil import DAY_MS  # noqa: E402

WHISTLE = str(Path(sys.executable).with_name("whistle"))
HOST = "127.0.0.1"


def generation(households: int, seed: int) -> dict[str, Any]:
    d = build_district(households, seed=seed)
    t0 = parse_start("2026-03-02")
    opts = TrafficOptions(nbiot_share=0.3, late_share=0.01, malformed_share=0.001)
    t = time.perf_counter()
    truth = sum(1 for _ in Simulation(d, start_ms=t0, end_ms=t0 + 7 * DAY_MS, seed=seed, options=opts).truth_lines())
    truth_s = time.perf_counter() - t
    sim = Simulation(d, start_ms=t0, end_ms=t0 + DAY_MS, seed=seed, options=opts)
    t = time.perf_counter()
    n = sum(1 for _ in sim.messages())
    s = time.perf_counter() - t
    return {
        "households": households,
        "messages_per_day": n,
        "readings_per_day": sim.stats.readings,
        "seconds": round(s, 2),
        "msg_per_s": round(n / s),
        "household_days_per_s": round(households / s),
        "truth_week_lines": truth,
        "truth_week_s": round(truth_s, 2),
    }


def load_run(port: int, rate: float, messages: int, qos: int, connections: int, subscribe: bool) -> dict[str, Any]:
    sub = None
    if subscribe:
        sub_cmd = ["mosquitto_sub", "-h", HOST, "-p", str(port), "-q", str(qos), "-t", "whistle/#", "-C", str(messages)]
        sub = subprocess.Popen(sub_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 - fixed argv
        time.sleep(0.5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env["WHISTLE_MQTT_URL"] = f"mqtt://{HOST}:{port}"
    cmd = [WHISTLE, "simulate", "--households", "3000", "--seed", "1", "--load", str(rate), "--messages", str(messages),
           "--connections", str(connections), "--qos", str(qos)]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    if res.returncode != 0:
        raise SystemExit(f"whistle simulate --load failed: {res.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    if sub is not None:
        try:
            sub.wait(timeout=60)
            report["subscriber_received_all"] = sub.returncode == 0
        except subprocess.TimeoutExpired:
            sub.kill()
            report["subscriber_received_all"] = False
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=20_000.0, help="target msg/s of the paced runs")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the paced runs")
    ap.add_argument("--flat-out-messages", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--gen-households", type=int, nargs="*", default=[3000, 25_000])
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    out["generation"] = [generation(h, 1) for h in args.gen_households]
    for g in out["generation"]:
        print(f"generation, {g['households']} households: {g['msg_per_s']:,} msg/s, "
              f"{g['household_days_per_s']:,} household-days/s ({g['messages_per_day']:,} messages a day); "
              f"a week's truth ({g['truth_week_lines']} lines) in {g['truth_week_s']} s", flush=True)  # fmt: skip

    workdir = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    configs = [
        ("paced", args.rate, int(args.rate * args.seconds), 1, False),
        ("paced", args.rate, int(args.rate * args.seconds), 1, True),
        ("flat_out", 0.0, args.flat_out_messages, 1, False),
        ("flat_out", 0.0, args.flat_out_messages, 1, True),
        ("flat_out", 0.0, args.flat_out_messages, 0, False),
    ]
    results = []
    for name, rate, n, qos, subscribe in configs:
        runs = []
        for _ in range(args.repeat):
            # a fresh broker per run, with Mosquitto's own in-flight default as measured
            broker = start_mosquitto(workdir, log_subscribe=False, max_inflight=None)
            try:
                runs.append(load_run(broker.port, rate, n, qos, args.connections, subscribe))
            finally:
                broker.stop()
        med = {
            "msg_per_s": statistics.median(r["msg_per_s"] for r in runs),
            "cpu_share": statistics.median(r["cpu_share"] for r in runs),
        }
        row = {"mode": name, "target": rate, "messages": n, "qos": qos, "subscriber": subscribe, "runs": runs,
               "median": med}  # fmt: skip
        results.append(row)
        each = ", ".join(f"{r['msg_per_s']:,}" for r in runs)
        got_all = all(r.get("subscriber_received_all") for r in runs)
        print(f"load {name:8s} qos {qos} {'+sub' if subscribe else '    '} target {rate:>8,.0f}: "
              f"median {med['msg_per_s']:,.0f} msg/s (runs {each}), simulator CPU {med['cpu_share']:.0%} of a core"
              + (f", subscriber got all: {got_all}" if subscribe else ""), flush=True)  # fmt: skip
    out["load"] = results
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
