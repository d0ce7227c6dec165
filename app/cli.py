"""The `whistle` command (CONTRACT.md §5)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from app.console import banner, configure_logging
from whistle.settings import Settings, SettingsError

log = logging.getLogger("whistle")


async def _serve(roles: list[str]) -> int:
    from app.runtime import Runtime, install_signal_handlers, run

    settings = Settings()
    stop = asyncio.Event()
    install_signal_handlers(stop)

    async def ready(rt: Runtime) -> None:
        if "api" in roles:
            banner(settings, rt.mqtt_url)
        log.info("roles running: %s", ", ".join(roles))

    await run(settings, roles, stop, on_ready=ready)
    return 0


async def _registry_import(data: bytes) -> int:
    from app.runtime import start_bus, start_database
    from whistle.registry import RegistryError, import_registry, parse_registry

    settings = Settings()
    try:
        reg = parse_registry(data)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    async with AsyncExitStack() as stack:
        db = await start_database(stack, settings)
        bus = await start_bus(stack, settings, db)  # the running roles take the change at once
        try:
            counts = await import_registry(db, reg, bus=bus)
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


def _health(args: argparse.Namespace) -> int:
    from app.health import check_file, check_http, health_url

    settings = Settings()
    path = args.file or settings.health_file
    if path is not None:
        ok, why = check_file(path, max_age_s=args.max_age)
    else:
        ok, why = check_http(args.url or health_url(settings), timeout_s=args.timeout)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


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

    health = sub.add_parser(
        "health",
        help="exit 0 if this container's process is healthy: its heartbeat file (WHISTLE_HEALTH_FILE), "
        "else GET /api/v1/health on WHISTLE_HTTP",
    )
    health.add_argument("--file", type=Path, default=None, help="the heartbeat file (default: WHISTLE_HEALTH_FILE)")
    health.add_argument("--max-age", type=float, default=30.0, help="seconds a heartbeat stays fresh")
    health.add_argument("--url", default=None, help="the health URL to ask instead of WHISTLE_HTTP's")
    health.add_argument("--timeout", type=float, default=5.0)

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
    configure_logging(args.verbose)
    try:
        if args.command == "demo":
            from app.demo import run_demo

            return asyncio.run(run_demo(args))
        if args.command == "serve":
            return asyncio.run(_serve(["collector", "rules", "alerts", "api"]))
        if args.command == "run":
            return asyncio.run(_serve([args.role]))
        if args.command == "health":
            return _health(args)
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
