"""`whistle simulate`: write a district's registry and ground truth; publish its traffic live, as a
backfill, or as load (CONTRACT.md §5, docs/SIMULATOR.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("whistle.simulate")

HORIZON_DAYS = 45.0


class SimulateError(ValueError):
    """A combination of options that cannot run, with what to change."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("district")
    g.add_argument("--households", type=int, default=200, help="size of the street (25,000 ≈ 瑞金二路)")
    g.add_argument("--seed", type=int, default=1, help="the same seed gives byte-identical registry and truth")
    g.add_argument(
        "--params",
        default=None,
        metavar="FILE",
        help='JSON overrides of simulators/params.py: {"district": {...}, "behaviour": {...}, "incidents": {...}}',
    )
    g.add_argument("--registry-out", default=None, metavar="FILE", help="write the registry JSON (CONTRACT.md §2)")
    g.add_argument("--truth-out", default=None, metavar="FILE", help="write the ground truth (JSON lines)")
    t = p.add_argument_group("time")
    t.add_argument(
        "--start",
        default=None,
        help="first simulated instant: RFC 3339 or YYYY-MM-DD (+08:00 midnight). Default: backfill "
        "--days before today's midnight; live: so that the span ends when the run does",
    )
    t.add_argument("--days", type=float, default=None, help="simulated span (backfill default 1)")
    t.add_argument("--speed", type=float, default=None, help="live: simulated seconds per real second (default 60)")
    t.add_argument("--backfill", action="store_true", help="publish the span's history as fast as the broker takes it")
    t.add_argument("--duration", type=float, default=None, help="stop after S real seconds")
    o = p.add_argument_group("delivery")
    o.add_argument(
        "--nbiot-batch",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of water meters on NB-IoT, uploading a day's readings in one batch",
    )
    o.add_argument(
        "--power-batch",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of power meters whose readings the utility shares once a day, in one batch",
    )
    o.add_argument("--late-share", type=float, default=0.0, help="share of messages delivered late (out of order)")
    o.add_argument("--malformed-share", type=float, default=0.0, help="extra malformed messages, as a share")
    o.add_argument("--ebike-interval", type=int, default=60, help="e-bike sensors' sampling interval, s")
    o.add_argument(
        "--incident-every",
        type=float,
        default=None,
        help="live: also a smoke drill incident every S real seconds (as the demo does)",
    )
    o.add_argument("--connections", type=int, default=None, help="MQTT connections (default 1; load: 4)")
    o.add_argument("--qos", type=int, choices=(0, 1), default=1)
    ld = p.add_argument_group("load mode")
    ld.add_argument(
        "--load",
        type=float,
        default=None,
        metavar="RATE",
        help="load mode: RATE messages/s (0: as fast as the broker takes them) of pre-built traffic",
    )
    ld.add_argument("--messages", type=int, default=None, help="load: messages to send (default RATE x --duration)")


def _span(args: argparse.Namespace, now: int) -> tuple[int, int | None]:
    from simulators.live import live_start
    from simulators.timebase import day_start, floor_to, parse_start
    from whistle.timeutil import DAY_MS, MINUTE_MS, local_day

    start = parse_start(args.start) if args.start else None
    if args.backfill:
        days = args.days if args.days is not None else 1.0
        if start is None:
            start = day_start(local_day(now)) - int(days * DAY_MS)
        return start, start + int(days * DAY_MS)
    speed = args.speed or 60.0
    span_ms: int | None = None
    if args.days is not None:
        span_ms = int(args.days * DAY_MS)
    elif args.duration is not None:
        span_ms = int(args.duration * speed * 1000)
    if start is None:
        start = live_start(now, speed, span_real_s=span_ms / speed / 1000 if span_ms else None)
    start = floor_to(start, 1000) if args.start else floor_to(start, MINUTE_MS)
    return start, (start + span_ms if span_ms else None)


def run_simulate(args: argparse.Namespace, mqtt_url: str | None) -> int:
    from simulators.district import build_district
    from simulators.live import LiveClock, SmokeDrill, connect_all, publish
    from simulators.load import prepare, run_load
    from simulators.params import Params
    from simulators.stream import Simulation, TrafficOptions
    from simulators.timebase import day_start
    from whistle.mqtt import MqttEndpoint
    from whistle.timeutil import DAY_MS, format_ms, local_day, now_ms

    if args.households < 1:
        raise SimulateError("--households must be at least 1")
    for name in ("nbiot_batch", "power_batch", "late_share", "malformed_share"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SimulateError(f"--{name.replace('_', '-')} is a share between 0 and 1")
    if args.backfill and args.speed is not None:
        raise SimulateError("--backfill publishes as fast as possible: drop --speed")
    if args.load is not None and (args.backfill or args.truth_out):
        raise SimulateError("load mode sends pre-built traffic: no --backfill and no --truth-out")
    params = Params()
    if args.params:
        try:
            params = Params.from_overrides(json.loads(Path(args.params).read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as exc:
            raise SimulateError(f"--params {args.params}: {exc}") from exc
    t = time.monotonic()
    district = build_district(args.households, seed=args.seed, params=params)
    log.info(
        "district: %d households, %d devices (%.2f s)",
        district.n_households,
        len(district.registry["devices"]),
        time.monotonic() - t,
    )
    if args.registry_out:
        Path(args.registry_out).write_text(
            json.dumps(district.registry, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        print(f"registry written to {args.registry_out}", file=sys.stderr)
    options = TrafficOptions(
        nbiot_share=args.nbiot_batch,
        power_batch_share=args.power_batch,
        late_share=args.late_share,
        malformed_share=args.malformed_share,
        ebike_interval_s=args.ebike_interval,
    )
    now = now_ms()
    stopping = {"stop": False}

    def on_signal(signum: int, frame: object) -> None:
        stopping["stop"] = True

    if args.load is not None:
        if not mqtt_url:
            raise SimulateError("load mode needs WHISTLE_MQTT_URL")
        rate = float(args.load)
        total = args.messages or (int(rate * (args.duration or 30.0)) if rate > 0 else 1_000_000)
        start = day_start(local_day(now)) - 7 * DAY_MS
        sim = Simulation(district, start_ms=start, end_ms=now - 60_000, seed=args.seed, options=options)
        clients = connect_all(
            MqttEndpoint.parse(mqtt_url), f"whistle-load-{args.seed}", args.connections or 4, args.qos
        )
        try:
            prepared = prepare(sim.messages(), total, clients)
            log.info("load: %d messages pre-built in %.1f s", prepared.messages, prepared.build_s)
            signal.signal(signal.SIGTERM, on_signal)
            report = run_load(prepared, clients, rate=rate, should_stop=lambda: stopping["stop"])
        finally:
            for c in clients:
                c.close()
        print(json.dumps({"mode": "load", **report.as_dict()}))
        return 0

    start, end = _span(args, now)
    if args.backfill and start < now - int(HORIZON_DAYS * DAY_MS):
        log.warning("the backfill starts more than %g days ago: the collector refuses readings that old", HORIZON_DAYS)
    sim = Simulation(district, start_ms=start, end_ms=end, seed=args.seed, options=options)
    truth_lines = 0
    if args.truth_out:
        if end is None:
            raise SimulateError("--truth-out needs a bounded span: give --days or --duration (or --backfill)")
        with Path(args.truth_out).open("w", encoding="utf-8") as out:
            for line in sim.truth_lines():
                out.write(line)
                truth_lines += 1
        print(f"truth written to {args.truth_out} ({truth_lines} lines)", file=sys.stderr)
    if not mqtt_url:
        if args.registry_out or args.truth_out:
            return 0
        raise SimulateError(
            "WHISTLE_MQTT_URL is not set: nowhere to publish (--registry-out / --truth-out alone only write files)"
        )
    log.info(
        "simulating %s .. %s (%s)",
        format_ms(start),
        format_ms(end) if end else "open-ended",
        "backfill" if args.backfill else f"live x{args.speed or 60.0:g}",
    )
    clients = connect_all(
        MqttEndpoint.parse(mqtt_url), f"whistle-simulator-{args.seed}", args.connections or 1, args.qos
    )
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    drill_out = None
    if args.truth_out and args.incident_every:
        drill_out = Path(args.truth_out).open("a", encoding="utf-8")  # noqa: SIM115 - closed below

    def record(incident: dict[str, Any]) -> None:
        if drill_out:
            drill_out.write(json.dumps(incident, ensure_ascii=False, separators=(",", ":")) + "\n")
            drill_out.flush()

    try:
        clock = None if args.backfill else LiveClock(start, args.speed or 60.0)
        drill = SmokeDrill(district, args.seed, args.incident_every) if args.incident_every and clock else None
        published = publish(
            sim,
            clients,
            clock=clock,
            should_stop=lambda: stopping["stop"],
            duration_s=args.duration,
            drill=drill,
            on_incident=record,
        )
    finally:
        for c in clients:
            c.close()
        if drill_out:
            drill_out.close()
    summary = {
        "mode": "backfill" if args.backfill else "live",
        "start": format_ms(start),
        "end": format_ms(end) if end else None,
        **published.as_dict(),
        "readings": sim.stats.readings,
        "malformed": sim.stats.malformed,
        "late": sim.stats.late,
        "batches": sim.stats.batches,
        "truth_lines": truth_lines,
    }
    print(json.dumps(summary))
    return 0
