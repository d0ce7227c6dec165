"""Alerts latency benchmark: a smoke alarm published over MQTT -> ticket created -> first
notification handed to its channel, while background meter traffic flows.

Everything runs as in `whistle serve` (collector, rules, alerts in one process; in-process bus;
embedded PostgreSQL) against a real Mosquitto. A separate process publishes `--rate` water and
power readings per second (QoS 0) for the whole run. Probes are sequential: each publishes one
smoke `alarm` event from a detector in a building with no open incident (QoS 1) and waits for the
live hub (the `live` channel, which the operations-center screen subscribes to) to see
`ticket.created` and then the first `notification` of that ticket. Reported: p50/p90/p99/max of
publish -> ticket and publish -> first notification, and the background rate achieved.

    .venv/bin/python scripts/bench_alerts.py --rate 5000 --probes 200 --json-out docs/bench_alerts.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from app.broker import free_port
from app.mosquitto import start_mosquitto
from app.runtime import Runtime, run
from whistle.registry import import_registry, parse_registry
from whistle.settings import Settings


def registry(households: int, buildings: int) -> dict[str, Any]:
    reg: dict[str, Any] = {
        "streets": [{"id": "RJ", "name": "瑞金二路街道"}],
        "grids": [{"id": "RJ-G1", "street_id": "RJ", "name": "综合网格"}]
        + [{"id": f"RJ-G1-M{m:02d}", "street_id": "RJ", "parent_id": "RJ-G1", "name": f"微网格{m}"} for m in range(10)],
        "buildings": [
            {"id": f"RJ-B{b:04d}", "grid_id": f"RJ-G1-M{b % 10:02d}", "address": f"{b} 号"} for b in range(buildings)
        ],
        "households": [
            {"id": f"RJ-H{h:06d}", "building_id": f"RJ-B{h % buildings:04d}", "registered_occupants": 2}
            for h in range(households)
        ],
        "devices": [{"id": f"SM-{b:04d}", "type": "smoke", "building_id": f"RJ-B{b:04d}"} for b in range(buildings)]
        + [{"id": f"WM-{h:06d}", "type": "water", "household_id": f"RJ-H{h:06d}"} for h in range(households)]
        + [{"id": f"PM-{h:06d}", "type": "power", "household_id": f"RJ-H{h:06d}"} for h in range(households)],
        "workers": [
            {
                "id": f"W-{m:02d}",
                "name": "网格员",
                "phone": "+8613900000000",
                "grid_id": f"RJ-G1-M{m:02d}",
                "role": "grid_worker",
            }
            for m in range(10)
        ]
        + [
            {"id": "W-LEAD", "name": "组长", "grid_id": "RJ-G1", "role": "grid_leader"},
            {"id": "W-CENTER", "name": "值班", "role": "street_center"},
        ],
    }
    return reg


def background(port: int, rate: int, households: int, stop: Any, counter: Any) -> None:
    """Publish `rate` meter readings per second (QoS 0) until `stop` is set."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-background")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    totals = [0.0] * households
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    i = 0
    started = time.monotonic()
    n = 0
    while not stop.is_set():
        now_ms = int(time.time() * 1000)
        for _ in range(per_tick):
            h = i % households
            kind = "water" if (i // households) % 2 == 0 else "power"
            totals[h] += 0.001
            field = "total_m3" if kind == "water" else "total_kwh"
            dev = f"{'WM' if kind == 'water' else 'PM'}-{h:06d}"
            client.publish(
                f"whistle/v1/{kind}/{dev}/data", json.dumps({"ts": now_ms, field: round(totals[h], 4)}), qos=0
            )
            i += 1
        n += per_tick
        counter.value = n
        sleep = started + n / rate - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    client.loop_stop()
    client.disconnect()


def pct(xs: list[float], p: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, round(p / 100 * (len(ys) - 1)))]


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    mosquitto = start_mosquitto(work, log_subscribe=False)
    port = mosquitto.port
    ctx = mp.get_context("spawn")
    stop_bg = ctx.Event()
    counter = ctx.Value("q", 0)
    result: dict[str, Any] = {}
    settings = Settings(
        mqtt_url=f"mqtt://127.0.0.1:{port}",
        state_dir=work / "state",
        http=f"127.0.0.1:{free_port()}",
        admin_token="bench-token-0123456789abcdef",  # noqa: S106 - a throwaway process
    )
    stop = asyncio.Event()

    async def on_ready(rt: Runtime) -> None:
        assert rt.alerts is not None and rt.collector is not None
        await import_registry(rt.db, parse_registry(registry(args.households, args.probes + 10)))
        await rt.collector.directory.load()
        sub = rt.alerts.live.subscribe()
        proc = ctx.Process(target=background, args=(port, args.rate, args.households, stop_bg, counter), daemon=True)
        proc.start()
        probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
        probe.connect("127.0.0.1", port)
        probe.loop_start()
        await asyncio.sleep(args.warmup)
        readings0, bg0, t0 = rt.collector.stats.readings, counter.value, time.monotonic()
        to_ticket: list[float] = []
        to_notify: list[float] = []
        missed = 0
        for i in range(args.probes):
            while len(sub):
                await sub.get()
            dev = f"SM-{i:04d}"
            t_pub = time.perf_counter()
            probe.publish(
                f"whistle/v1/smoke/{dev}/event", json.dumps({"ts": int(time.time() * 1000), "event": "alarm"}), qos=1
            )
            ticket_at = None
            try:
                async with asyncio.timeout(10):
                    while True:
                        msg = json.loads(await sub.get())
                        if msg["type"] == "ticket.created" and ticket_at is None:
                            ticket_at = time.perf_counter()
                        elif msg["type"] == "notification":
                            to_notify.append((time.perf_counter() - t_pub) * 1000)
                            to_ticket.append(((ticket_at or time.perf_counter()) - t_pub) * 1000)
                            break
            except TimeoutError:
                missed += 1
            await asyncio.sleep(args.gap)
        elapsed = time.monotonic() - t0
        stop_bg.set()
        proc.join(10)
        probe.loop_stop()
        probe.disconnect()
        sub.close()
        result.update(
            probes=args.probes,
            missed=missed,
            background_published_per_s=round((counter.value - bg0) / elapsed),
            background_stored_per_s=round((rt.collector.stats.readings - readings0) / elapsed),
            ticket_ms={
                "p50": pct(to_ticket, 50),
                "p90": pct(to_ticket, 90),
                "p99": pct(to_ticket, 99),
                "max": max(to_ticket),
            },
            notification_ms={
                "p50": pct(to_notify, 50),
                "p90": pct(to_notify, 90),
                "p99": pct(to_notify, 99),
                "max": max(to_notify),
                "mean": statistics.fmean(to_notify),
            },
        )
        stop.set()

    try:
        await run(settings, ["collector", "rules", "alerts"], stop, on_ready=on_ready)
    finally:
        stop_bg.set()
        mosquitto.stop()
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=5000, help="background readings per second")
    ap.add_argument("--households", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--gap", type=float, default=0.2, help="seconds between probes")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("alerts.channels").setLevel(logging.ERROR)  # nobody holds a live connection: no_address
    figures = asyncio.run(bench(args))
    figures.update(
        rate=args.rate,
        households=args.households,
        machine={"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    )
    for k in ("ticket_ms", "notification_ms"):
        figures[k] = {p: round(v, 1) for p, v in figures[k].items()}
    print(json.dumps(figures, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
