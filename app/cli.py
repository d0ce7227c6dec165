"""The `whistle` command (CONTRACT.md §5)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from contextlib import AsyncExitStack
from datetime import date
from pathlib import Path

from app.console import banner, configure_logging
from whistle.settings import Settings, SettingsError

log = logging.getLogger("whistle")
DEMO_HOUSEHOLDS = 200


def cli_actor() -> str:
    """Who a command-line change is recorded as: the operating-system user who ran it."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


async def _serve(roles: list[str]) -> int:
    from app.runtime import Runtime, install_signal_handlers, run

    settings = Settings()
    settings.check_secrets()
    stop = asyncio.Event()
    install_signal_handlers(stop)

    async def ready(rt: Runtime) -> None:
        if "api" in roles and not settings.supervised:
            banner(settings, rt.mqtt_url)
        log.info("roles running: %s", ", ".join(roles))

    await run(settings, roles, stop, on_ready=ready)
    return 0


async def _serve_supervised() -> int:
    """`whistle serve`: the roles as child processes of this one (app/supervisor.py)."""
    from app.runtime import install_signal_handlers
    from app.supervisor import Deployment, serve

    settings = Settings()
    settings.check_secrets()
    stop = asyncio.Event()
    install_signal_handlers(stop)

    async def ready(dep: Deployment) -> None:
        banner(settings, dep.mqtt_url)
        log.info("roles running as %d processes: %s", len(dep.children), ", ".join(c.name for c in dep.children))

    return await serve(settings, stop, on_ready=ready)


def _clear_error(exc: Exception) -> int | None:
    """The exit status for a failure worth one line rather than a traceback (printed here), or None."""
    from app.supervisor import StartFailed

    if isinstance(exc, StartFailed):
        print(f"whistle: {exc}", file=sys.stderr)
        return exc.code
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        print(f"whistle: cannot reach the database: {str(exc).strip()}", file=sys.stderr)
        return 2
    return None


def _one_process(settings: Settings) -> bool:
    """Whether `whistle serve` runs every role in this process: asked for, or a bus or broker that needs it."""
    return (
        settings.single_process
        or settings.bus_kind == "memory"
        or (not settings.mqtt_url and settings.mqtt_embedded == "amqtt")
    )


async def _registry_import(data: bytes, mode: str = "upsert") -> int:
    from alerts.retirement import follow_up_retirements
    from alerts.service import AlertService
    from app.runtime import start_bus, start_database
    from whistle.broker_auth import render
    from whistle.registry import RegistryError, apply_import, parse_registry

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
            done = await apply_import(
                db,
                reg,
                actor=cli_actor(),
                mode="replace" if mode == "replace" else "upsert",
                chunk_rows=settings.registry_chunk_rows,
                bus=bus,
            )
        except RegistryError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        out: dict[str, object] = dict(done.counts)
        if mode == "replace":
            out["retired"] = done.retired
            out["follow_up"] = await follow_up_retirements(AlertService(db), done.retired, actor=cli_actor())
        if settings.broker_auth_dir is not None:
            (await render(db)).write(settings.broker_auth_dir)
    print(json.dumps(out, ensure_ascii=False))
    return 0


async def _users(args: argparse.Namespace) -> int:
    from app.runtime import start_database
    from whistle import users
    from whistle.access import Role
    from whistle.errors import ServiceError

    settings = Settings()
    actor = cli_actor()
    async with AsyncExitStack() as stack:
        db = await start_database(stack, settings)
        try:
            if args.users_command == "add":
                made = await users.add_user(
                    db,
                    user_id=args.id,
                    name=args.name or args.id,
                    role=Role(args.role),
                    grid_id=args.grid,
                    actor=actor,
                )
                print(json.dumps({"id": made.id, "role": made.role.value, "grid_id": made.grid_id}))
            elif args.users_command == "token":
                ttl = (args.ttl_days or settings.token_ttl_days) * 86400.0
                issued = await users.issue_token(db, args.id, actor=actor, ttl_s=ttl, label=args.label)
                print(issued.token)  # shown this once; only its hash is kept
                print(f"expires {issued.expires_at.isoformat()}", file=sys.stderr)
            elif args.users_command == "revoke":
                n = await users.revoke_tokens(db, args.id, actor=actor)
                print(json.dumps({"id": args.id, "revoked": n}))
            elif args.users_command == "password":
                password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("new password: ")
                await users.set_password(db, args.id, password, actor=actor, min_length=settings.min_password_length)
                print(json.dumps({"id": args.id, "password": "set"}))
            else:
                for u in await users.list_users(db):
                    print(
                        json.dumps(
                            {
                                "id": u.id,
                                "name": u.name,
                                "role": u.role.value,
                                "grid_id": u.grid_id,
                                "kind": u.kind,
                                "active": u.active,
                                "active_tokens": u.active_tokens,
                            },
                            ensure_ascii=False,
                        )
                    )
        except ServiceError as exc:
            print(f"whistle: {exc}", file=sys.stderr)
            return 2
    return 0


async def _device_credentials(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from app.runtime import start_database
    from whistle.broker_auth import GatewaySpec, provision, render, write_credentials_csv
    from whistle.errors import ServiceError

    settings = Settings()
    out: Path = args.out
    async with AsyncExitStack() as stack:
        db = await start_database(stack, settings)
        try:
            issued = await provision(
                db,
                actor=cli_actor(),
                gateways=[GatewaySpec.parse(g) for g in args.gateway],
                collectors=args.collector or ["whistle-collector"],
                rotate=args.rotate,
            )
        except ServiceError as exc:
            print(f"whistle: {exc}", file=sys.stderr)
            return 2
        files = await render(db)
    written = files.write(out)
    summary: dict[str, object] = {"accounts": files.accounts, "files": [str(p) for p in written], "issued": len(issued)}
    if issued:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        csv_path = write_credentials_csv(out / f"credentials-{stamp}.csv", issued)
        summary["credentials_csv"] = str(csv_path)
        summary["note"] = "the new passwords are in the CSV only (mode 0600): hand them out, then delete it"
    print(json.dumps(summary, ensure_ascii=False))
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


async def _households_run(args: argparse.Namespace) -> int:
    """Ask the running service for the household job (a request row the rules role carries out) and wait."""
    from app.runtime import start_database
    from whistle import jobs
    from whistle.errors import ServiceError

    settings = Settings()
    async with AsyncExitStack() as stack:
        db = await start_database(stack, settings)
        try:
            rid = await jobs.request_household_days(db, first=args.first, last=args.last, actor=cli_actor())
            done = await jobs.wait_for_request(db, rid, timeout_s=args.wait, pickup_s=min(30.0, args.wait))
        except ServiceError as exc:
            print(f"whistle: {exc}", file=sys.stderr)
            return 3
    print(json.dumps({"request": done.id, "status": done.status, **done.result}, ensure_ascii=False))
    return 0 if done.status == "done" else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whistle", description="数字吹哨 Digital Whistle: IoT sensing and alerts")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="everything embedded: a simulated district, the pipeline and the screen",
        description="Everything embedded: a simulated street imported into the registry, its history backfilled "
        "over MQTT as fast as the service takes it (meters in daily batches; the household job judges the days "
        "once they are stored), then its life live with the wall clock and a smoke drill every --incident-every "
        "seconds. The console shows one status line; the log goes to logs/demo.log in WHISTLE_STATE_DIR.",
    )
    demo.add_argument("--households", type=int, default=DEMO_HOUSEHOLDS, help="size of the street")
    demo.add_argument(
        "--history-days",
        type=int,
        default=14,
        help="local days of history backfilled before going live (0: none; the group-rental model judges 14)",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="how many times faster than real life things happen live (above 1 the street starts in the past "
        "so that its clock reaches the present when the demo ends, or after an hour)",
    )
    demo.add_argument("--duration", type=float, default=None, help="stop by itself after S seconds")
    demo.add_argument("--incident-every", type=float, default=20.0, help="seconds between smoke incidents")
    demo.add_argument(
        "--seed", type=int, default=1, help="the street and its incidents (the same seed, the same street)"
    )

    sub.add_parser(
        "serve",
        help="every role, as child processes it supervises (WHISTLE_SINGLE_PROCESS=true: in one process)",
        description="Every role, configured by the environment (README, Configuration): WHISTLE_DATABASE_URL, "
        "WHISTLE_MQTT_URL (unset: devices publish to the embedded MQTT endpoint on WHISTLE_MQTT_LISTEN, "
        "default 127.0.0.1:1883), WHISTLE_KAFKA_BOOTSTRAP, WHISTLE_HTTP, WHISTLE_ADMIN_TOKEN, WHISTLE_COLLECTORS, "
        "WHISTLE_SINGLE_PROCESS.",
    )
    hh = sub.add_parser("households", help="household jobs of a running service")
    hh_sub = hh.add_subparsers(dest="households_command", required=True)
    hh_run = hh_sub.add_parser(
        "run", help="feature and judge the household days (after an import or a backfill); the running service does it"
    )
    hh_run.add_argument(
        "--from", dest="first", type=date.fromisoformat, default=None, help="first local day, YYYY-MM-DD"
    )
    hh_run.add_argument("--to", dest="last", type=date.fromisoformat, default=None, help="last local day (yesterday)")
    hh_run.add_argument("--wait", type=float, default=1800.0, help="give up waiting after S seconds")
    run = sub.add_parser("run", help="roles in this process, for scale-out (`whistle serve` starts them so)")
    run.add_argument("role", nargs="+", choices=["collector", "rules", "alerts", "api"])

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
    imp.add_argument(
        "--mode",
        choices=["upsert", "replace"],
        default="upsert",
        help="replace: also retire what the file no longer lists (in the sections it has)",
    )

    usr = sub.add_parser("users", help="accounts: named users, tokens, passwords")
    usr_sub = usr.add_subparsers(dest="users_command", required=True)
    add = usr_sub.add_parser("add", help="create a named account (admin, ops_center, screen, integration)")
    add.add_argument("id")
    add.add_argument("--role", required=True, choices=["admin", "ops_center", "screen", "integration"])
    add.add_argument("--grid", default=None, help="limit the account to this grid and the grids below it")
    add.add_argument("--name", default=None)
    tok = usr_sub.add_parser("token", help="issue a bearer token (printed once) for a user or registry worker")
    tok.add_argument("id")
    tok.add_argument("--ttl-days", type=float, default=None)
    tok.add_argument("--label", default="")
    rev = usr_sub.add_parser("revoke", help="revoke every token and session of an account")
    rev.add_argument("id")
    pwd = usr_sub.add_parser("password", help="set or reset an account's password (asked for, never an argument)")
    pwd.add_argument("id")
    pwd.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    usr_sub.add_parser("list", help="named accounts and registry workers")

    dev = sub.add_parser("devices", help="device commands")
    dev_sub = dev.add_subparsers(dest="devices_command", required=True)
    cred = dev_sub.add_parser(
        "credentials",
        help="broker accounts for every device (new passwords in a CSV, once), the password file and ACL",
    )
    cred.add_argument("--out", type=Path, required=True, help="directory for passwd, acl, service.passwd, service.acl")
    cred.add_argument(
        "--gateway", action="append", default=[], help="NAME (every device) or NAME=DEV1,DEV2: a gateway account"
    )
    cred.add_argument("--collector", action="append", default=[], help="collector account (whistle-collector)")
    cred.add_argument("--rotate", action="append", default=[], help="issue a new password for this username")

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
            if _one_process(Settings()):
                return asyncio.run(_serve(["collector", "rules", "alerts", "api"]))
            return asyncio.run(_serve_supervised())
        if args.command == "run":
            return asyncio.run(_serve(list(dict.fromkeys(args.role))))
        if args.command == "health":
            return _health(args)
        if args.command == "registry":
            return asyncio.run(_registry_import(args.file.read_bytes(), args.mode))
        if args.command == "households":
            return asyncio.run(_households_run(args))
        if args.command == "users":
            return asyncio.run(_users(args))
        if args.command == "devices":
            return asyncio.run(_device_credentials(args))
        if args.command == "rules":
            return _rules_check(args.file)
        if args.command == "simulate":
            return _simulate_command(args)
    except (SettingsError, ValueError, NotImplementedError, OSError) as exc:
        print(f"whistle: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        code = _clear_error(exc)
        if code is None:
            raise
        return code
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
