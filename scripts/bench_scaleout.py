#!/usr/bin/env python3
"""Benchmark: scale-out over a real Kafka, every role its own process (issue "City scale").

Everything is real and on 127.0.0.1: a single-node KRaft Kafka (tests/kafka_broker.py, the broker the
tests start), a private Mosquitto (app.mosquitto), the embedded PostgreSQL, and the roles as separate
processes: `whistle run collector` (N of them on one MQTT shared subscription, distinct client ids),
`whistle run rules` (M of them in one consumer group per lane), `whistle run alerts`, `whistle run api`.
Each deployment gets a fresh Kafka, a fresh Mosquitto and a fresh database, the simulator's district
imported with `whistle registry import`.

Traffic is the simulator's load mode (simulators/load.py) in a publisher process of its own: the
district's realistic stream from a fixed start a week ago (event time, so the same input gives the
same alarms), pre-built as MQTT PUBLISH packets before the clock starts and written at QoS 1 at each
step's rate over 4 connections; consecutive steps take consecutive slices of one stream, so no step
repeats another's messages.

1. throughput (`--configs`, e.g. 1x1,2x1,1x2,2x2 = collectors x rule workers): for every step rate
   (`--rates`, 0 = flat out), the step's messages are published, then the script waits until every
   collector has handled them (`whistle_collector_messages_total`) and every consumer group's lag
   (GET /api/v1/pipeline) is 0. Stored rate: the step's readings over first publish → last
   `received_at` in the readings table. CPU per process: /proc/<pid>/stat over the step.
2. hand-over (`--handover`): two rule workers, one collector; the same stream once uninterrupted and
   once with one rule worker SIGKILLed under load. Measured: kill → the survivor restores the dead
   worker's partitions (its log) → its group's committed offsets on them move again (Kafka); a smoke
   `alarm` per priority partition published just after the kill → its ticket (GET /api/v1/tickets);
   the alarms and tickets of both runs compared.

Every wait is bounded; run it under `flock /tmp/whistle-bench.lock` on a shared machine.

    .venv/bin/python scripts/bench_scaleout.py --json-out docs/bench_scaleout.json
    .venv/bin/python scripts/bench_scaleout.py --configs 1x1 --rates 2000 --step-messages 20000 --no-handover
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.broker import free_port  # noqa: E402
from app.mosquitto import Broker, start_mosquitto, stop_process  # noqa: E402
from evaluation.frontdoor.client import Api  # noqa: E402
from evaluation.frontdoor.processes import mqtt_subscriptions  # noqa: E402
from tests.kafka_broker import KafkaBroker, start_kafka, stop_kafka  # noqa: E402
from whistle.bus import partition_for  # noqa: E402
from whistle.store.embedded import EmbeddedPostgres  # noqa: E402

EXE = Path(sys.executable).with_name("whistle")
TOKEN = "bench-scaleout-admin-token-0123456789"  # noqa: S105 - a throwaway deployment
HZ = os.sysconf("SC_CLK_TCK")
READINGS_GROUP = "whistle-rules.whistle.readings"
PRIORITY_GROUP = "whistle-rules.whistle.priority"


# --------------------------------------------------------------------------- the publisher process


def publisher_main(args: argparse.Namespace) -> int:
    """The publisher child: build the stream, pre-encode its slices, then publish one slice per `go` line."""
    from simulators.district import build_district
    from simulators.live import connect_all
    from simulators.load import prepare, run_load
    from simulators.stream import Simulation, TrafficOptions
    from whistle.mqtt import MqttEndpoint

    district = build_district(args.households, seed=args.seed)
    sim = Simulation(district, start_ms=args.start_ms, end_ms=args.end_ms, seed=args.seed, options=TrafficOptions())
    stream = sim.messages()
    clients = connect_all(MqttEndpoint.parse(args.mqtt_url), f"bench-load-{uuid.uuid4().hex[:6]}", 4, 1)
    counts = [int(c) for c in args.counts.split(",")]
    slices = []
    for n in counts:
        taken = [m for _, m in zip(range(n), stream, strict=False)]
        last_ts = [_event_ts(m.payload) for m in taken[:: max(1, len(taken) // 50)]]
        slices.append((prepare(iter(taken), n, clients), last_ts))
    print(json.dumps({"ready": [p.messages for p, _ in slices], "ts": [t for _, t in slices]}), flush=True)
    try:
        for (prepared, _), line in zip(slices, sys.stdin, strict=False):
            rate = float(line.strip() or 0)
            report = run_load(prepared, clients, rate=rate, drain_timeout=120.0)
            print(json.dumps(report.as_dict()), flush=True)
    finally:
        for c in clients:
            c.close()
    return 0


def _event_ts(payload: bytes) -> int | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("ts"), int):
        return int(doc["ts"])
    return None


class Publisher:
    """The publisher child, driven over its stdin/stdout."""

    def __init__(self, mqtt_url: str, households: int, seed: int, start_ms: int, counts: list[int]) -> None:
        argv = [sys.executable, __file__, "--publisher-child", "--mqtt-url", mqtt_url]
        argv += ["--households", str(households), "--seed", str(seed), "--start-ms", str(start_ms)]
        argv += ["--end-ms", str(start_ms + 6 * 86_400_000), "--counts", ",".join(map(str, counts))]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline() or "null")
        if not ready or ready.get("ready") != counts:
            raise RuntimeError(f"the publisher could not build the stream: {ready}")
        self.event_ts: list[list[int | None]] = ready["ts"]

    def go(self, rate: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{rate}\n")
        self.proc.stdin.flush()

    def report(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the publisher exited ({self.proc.poll()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- processes and CPU


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / HZ


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@dataclass
class Cpu:
    """CPU seconds per named process (PostgreSQL: the postmaster and its backends) at one moment."""

    pids: dict[str, list[int]]
    at: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)

    def sample(self) -> Cpu:
        seconds = {name: sum(cpu_s(p) for p in pids) for name, pids in self.pids.items()}
        return Cpu(self.pids, time.monotonic(), seconds)

    @staticmethod
    def share(a: Cpu, b: Cpu) -> dict[str, float]:
        wall = b.at - a.at
        return {n: round((b.seconds[n] - a.seconds.get(n, 0.0)) / wall, 3) for n in b.seconds} if wall else {}


# --------------------------------------------------------------------------- one deployment


@dataclass(frozen=True)
class Pg:
    admin_url: str
    pgdata: Path


class Deployment:
    """Kafka, Mosquitto, a database and the roles as processes: `collectors` x `rules` workers."""

    def __init__(self, work: Path, pg: Pg, registry: Path, *, collectors: int, rules: int, partitions: int) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
        self.kafka: KafkaBroker | None = None
        self.mqtt: Broker | None = None
        self.api: Api | None = None
        try:
            self._start(work, pg, registry, collectors=collectors, rules=rules, partitions=partitions)
        except BaseException:
            self.stop()
            raise

    def _start(self, work: Path, pg: Pg, registry: Path, *, collectors: int, rules: int, partitions: int) -> None:
        pg_admin, pg_pid_file = pg.admin_url, pg.pgdata / "postmaster.pid"
        self.work = work
        self.collectors, self.rules, self.partitions = collectors, rules, partitions
        work.mkdir(parents=True, exist_ok=True)
        self.kafka = start_kafka(work / "kafka", partitions=partitions)
        self.mqtt = start_mosquitto(work / "mqtt", log_subscribe=True)
        self.mqtt_url = f"mqtt://127.0.0.1:{self.mqtt.port}"
        self.db_url = another_db(pg_admin)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
        self.env.update(
            WHISTLE_MQTT_URL=self.mqtt_url,
            WHISTLE_DATABASE_URL=self.db_url,
            WHISTLE_KAFKA_BOOTSTRAP=self.kafka.bootstrap,
            WHISTLE_ADMIN_TOKEN=TOKEN,
            WHISTLE_STATE_DIR=str(work / "state"),
            WHISTLE_HTTP=f"127.0.0.1:{self.port}",
            WHISTLE_PARTITIONS=str(partitions),
            WHISTLE_DEPLOYMENT=f"bench-{uuid.uuid4().hex[:8]}",  # one /metrics over every process
        )
        imp = subprocess.run(  # noqa: S603 - fixed argv
            [str(EXE), "registry", "import", str(registry)], env=self.env, capture_output=True, check=False
        )
        if imp.returncode != 0:
            raise RuntimeError(f"registry import failed: {imp.stderr.decode()[-2000:]}")
        share = f"bench-{uuid.uuid4().hex[:6]}"
        for i in range(1, collectors + 1):
            self.spawn(
                f"collector{i}", "collector", WHISTLE_MQTT_SHARE_GROUP=share, WHISTLE_MQTT_CLIENT_ID=f"c{i}-{share}"
            )
        for i in range(1, rules + 1):
            self.spawn(f"rules{i}", "rules")
        self.spawn("alerts", "alerts")
        self.spawn("api", "api")
        self.api = Api(f"http://127.0.0.1:{self.port}", TOKEN, timeout_s=30)
        self.api.wait_healthy(120, alive=self.alive)
        until(lambda: all(mqtt_subscriptions(self.log(f"collector{i}")) >= 2 for i in range(1, collectors + 1)), 60)
        until(lambda: self.api.pipeline() is not None, 30)
        self.postmaster = int(pg_pid_file.read_text().split()[0])

    def spawn(self, name: str, role: str, **extra: str) -> None:
        with (self.work / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(  # noqa: S603 - fixed argv
                [str(EXE), "run", role],
                env={**self.env, "WHISTLE_PROCESS_NAME": name, **extra},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")

    def alive(self) -> None:
        for name, p in self.procs.items():
            if p.returncode is None and p.poll() is not None and name not in self.killed:
                raise RuntimeError(f"{name} exited {p.returncode}:\n{self.log(name)[-3000:]}")

    def cpu(self, publisher: int) -> Cpu:
        pids = {name: [p.pid] for name, p in self.procs.items() if name not in self.killed}
        pids["kafka"] = [self.kafka.process.pid, *children_of(self.kafka.process.pid)]
        pids["mosquitto"] = [self.mqtt.process.pid]
        pids["postgres"] = [self.postmaster, *children_of(self.postmaster)]
        pids["publisher"] = [publisher]
        return Cpu(pids).sample()

    def stop(self) -> None:
        """Stop the roles (SIGTERM, then SIGKILL after 40 s), Mosquitto and Kafka; idempotent."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.api is not None:
            self.api.close()
            self.api = None
        if self.mqtt is not None:
            stop_process(self.mqtt.process)
            self.mqtt = None
        if self.kafka is not None:
            stop_kafka(self.kafka)
            self.kafka = None


def another_db(admin_url: str) -> str:
    name = f"scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(admin_url)
    params["dbname"] = name
    return make_conninfo("", **params)


def until(check: Any, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - a service still starting answers with errors
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f} s: {getattr(check, '__name__', check)}")
        time.sleep(interval)


@dataclass
class Look:
    at: float
    messages: int
    readings: int
    rules_evaluated: int
    lag: dict[str, int]


def look(d: Deployment) -> Look:
    m = d.api.metrics()
    p = d.api.pipeline()
    return Look(
        time.time(),
        int(m.get("whistle_collector_messages_total", 0)),
        int(p.get("readings", 0)),
        int(m.get("whistle_rules_readings_total", 0)),
        {g["group"]: int(g["lag"]) for g in p["groups"]},
    )


def readings_between(db_url: str, t0: float, t1: float) -> tuple[int, float, float]:
    """Readings received in [t0, t1] (wall clock): count, first and last received_at."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM min(received_at)), extract(epoch FROM max(received_at)) "
            "FROM readings WHERE received_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
            (t0, t1),
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0), float(row[2] or 0)


# --------------------------------------------------------------------------- 1. throughput


def throughput(args: argparse.Namespace, pg_admin: Pg, registry: Path, work: Path, start_ms: int) -> list[Any]:
    rates = [float(r) for r in args.rates.split(",")]
    counts = [args.step_messages if r == 0 else int(r * args.step_s) for r in rates]
    out = []
    for config in args.configs.split(","):
        n_col, n_rules = (int(x) for x in config.split("x"))
        print(f"== {n_col} collector(s) x {n_rules} rule worker(s)", flush=True)
        d = Deployment(
            work / f"t{config}", pg_admin, registry, collectors=n_col, rules=n_rules, partitions=args.partitions
        )
        pub = None
        try:
            pub = Publisher(d.mqtt_url, args.households, args.seed, start_ms, counts)
            published = 0
            steps = []
            for rate in rates:
                before = look(d)
                cpu0 = d.cpu(pub.proc.pid)
                busy0 = machine_busy()
                t0 = time.time()
                pub.go(rate)
                rep = pub.report()
                t_sent = time.time()
                published = rep["acked"]  # the publisher's PUBACKs so far (its counters run across steps)
                n = rep["messages"]
                series = [before]
                t_handled = t_drained = None
                deadline = time.monotonic() + args.drain_timeout
                while time.monotonic() < deadline:
                    d.alive()
                    now = look(d)
                    series.append(now)
                    if t_handled is None and now.messages >= published:
                        t_handled = now.at
                    if t_handled is not None and not any(now.lag.values()):
                        t_drained = now.at
                        break
                    time.sleep(0.25)
                cpu1 = d.cpu(pub.proc.pid)
                busy1 = machine_busy()
                stored, _first, last = readings_between(d.db_url, t0 - 1, time.time())
                end = series[-1]
                # the rules' drain rate: readings evaluated while they were behind, after the collectors finished
                behind = [
                    s for s in series if t_handled is not None and s.at >= t_handled and s.lag.get(READINGS_GROUP)
                ]
                rules_rate = (
                    (behind[-1].rules_evaluated - behind[0].rules_evaluated) / (behind[-1].at - behind[0].at)
                    if len(behind) >= 3 and behind[-1].at > behind[0].at
                    else None
                )
                step = {
                    "target_msg_per_s": rate,
                    "published": n,
                    "offered_msg_per_s": round(n / rep["seconds"]),
                    "publish_s": rep["seconds"],
                    "readings_stored": stored,
                    "stored_msg_per_s": round(n / (last - t0)) if last > t0 else None,
                    "stored_readings_per_s": round(stored / (last - t0)) if last > t0 else None,
                    "collectors_done_after_publish_s": round(t_handled - t_sent, 2) if t_handled else None,
                    "lag_zero_after_publish_s": round(t_drained - t_sent, 2) if t_drained else None,
                    "rules_evaluated": end.rules_evaluated - before.rules_evaluated,
                    "rules_drain_readings_per_s": round(rules_rate) if rules_rate else None,
                    "max_rules_lag": max(s.lag.get(READINGS_GROUP, 0) for s in series),
                    "cpu_share": Cpu.share(cpu0, cpu1),
                }
                shares = step["cpu_share"]
                wall = cpu1.at - cpu0.at
                step["machine_busy_cores"] = round((busy1[0] - busy0[0]) / wall, 2)
                step["others_cores"] = round(step["machine_busy_cores"] - sum(shares.values()), 2)
                step["sustained"] = sustained(step, keepup=args.keepup, lag_zero_s=args.lag_zero_s)
                steps.append(step)
                print(json.dumps(step), flush=True)
                if t_drained is None:
                    break
            # the same event-time input into every deployment: its alarms, to compare with the first's
            settle(d, published=published, timeout=args.drain_timeout)
            alarms = alarms_of(d.api)
            total = readings_total(d.db_url)
            dup = duplicate_readings(d.db_url)
            size = readings_bytes(d.db_url)
            out.append(
                {
                    "collectors": n_col,
                    "rule_workers": n_rules,
                    "alarm_kinds": count_kinds(alarms),
                    "alarms": alarms,
                    "steps": steps,
                    "messages_published": published,
                    "readings_stored": total,
                    "duplicate_readings": dup,
                    "readings_bytes": size,
                    "bytes_per_reading": round(size / total) if total else None,
                    "dead_letters": d.api.pipeline().get("dead_letters"),
                }
            )
        finally:
            if pub is not None:
                pub.close()
            d.stop()
    return out


def sustained(step: dict[str, Any], *, keepup: float, lag_zero_s: float) -> bool:
    """A paced step the deployment kept up with: stored at >= `keepup` of the offered rate (timed by the readings'
    `received_at`, first publish to last stored) and every consumer group's lag back to 0 within `lag_zero_s` of
    the last PUBACK (the rule lanes commit every 5 s; /metrics comes from 2-s heartbeats)."""
    stored, offered, lag_zero = step["stored_msg_per_s"], step["offered_msg_per_s"], step["lag_zero_after_publish_s"]
    return bool(
        step["target_msg_per_s"] > 0
        and stored is not None
        and stored >= keepup * offered
        and lag_zero is not None
        and lag_zero <= lag_zero_s
    )


def machine_busy() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far (/proc/stat), to tell our share from others'."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / HZ, sum(fields) / HZ


def readings_total(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def readings_bytes(db_url: str) -> int:
    """On-disk bytes of the readings table: its daily partitions with their indexes and TOAST."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) + pg_total_relation_size('readings') "
            "FROM pg_inherits WHERE inhparent = 'readings'::regclass"
        ).fetchone()
    return int(row[0]) if row else 0


def duplicate_readings(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) - count(DISTINCT (device_id, ts, channel, seq)) FROM readings").fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- 2. hand-over


def probe_detectors(registry: dict[str, Any], partitions: int) -> list[tuple[str, str]]:
    """One smoke detector per priority partition: (device, building), each in a building of its own."""
    building_of = {h["id"]: h["building_id"] for h in registry["households"]}
    chosen: dict[int, tuple[str, str]] = {}
    for d in registry["devices"]:
        if d["type"] != "smoke":
            continue
        b = d.get("building_id") or building_of.get(d.get("household_id"))
        if b is None:
            continue
        p = partition_for(str(b).encode(), partitions)
        if p not in chosen and b not in {x[1] for x in chosen.values()}:
            chosen[p] = (d["id"], b)
    return [chosen[p] for p in sorted(chosen)]


async def committed(bootstrap: str, group: str) -> dict[int, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == "whistle.readings"}
    finally:
        await admin.close()


def alarms_of(api: Api) -> list[tuple[Any, ...]]:
    return sorted(
        (a["kind"], a["subject_id"], a["first_seen"], a["last_seen"], a["status"], a["count"]) for a in api.alarms()
    )


def handover_run(
    args: argparse.Namespace, pg_admin: Pg, registry: Path, work: Path, start_ms: int, *, kill: bool
) -> dict[str, Any]:
    reg = json.loads(registry.read_text())
    probes = probe_detectors(reg, args.partitions)
    d = Deployment(work, pg_admin, registry, collectors=1, rules=2, partitions=args.partitions)
    pub = None
    try:
        pub = Publisher(d.mqtt_url, args.handover_households, args.seed, start_ms, [args.handover_messages])
        stream_ts = [t for t in pub.event_ts[0] if t is not None]
        # the probes' event time: the stream's at the moment of the kill (the publisher is paced)
        at = min(
            len(stream_ts) - 1, int(len(stream_ts) * args.kill_after_s * args.handover_rate / args.handover_messages)
        )
        probe_ts = stream_ts[at]
        from simulators.wire import WireClient, publish_packet

        probe = WireClient("127.0.0.1", d.mqtt.port, f"bench-probe-{uuid.uuid4().hex[:6]}", qos=1)
        probe.connect()
        cpu0 = d.cpu(pub.proc.pid)
        t0 = time.time()
        pub.go(args.handover_rate)
        time.sleep(args.kill_after_s)
        result: dict[str, Any] = {"killed": kill}
        victim = "rules2"
        survivor_log_before = len(d.log("rules1"))
        before_kill = asyncio.run(committed(d.kafka.bootstrap, READINGS_GROUP))
        t_kill = time.time()
        if kill:
            d.killed.add(victim)
            d.procs[victim].send_signal(signal.SIGKILL)
        time.sleep(args.probe_after_s)
        sent_at: dict[str, float] = {}
        for i, (device, building) in enumerate(probes):
            payload = json.dumps({"ts": probe_ts + i, "seq": 900_000 + i, "event": "alarm"}).encode()
            probe.send_packets(publish_packet(f"whistle/v1/smoke/{device}/event".encode(), payload, 1, i + 1), 1)
            sent_at[building] = time.time()
        ticket_at: dict[str, float] = {}
        restored_at: dict[int, float] = {}
        moving_at: dict[int, float] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            len(ticket_at) < len(probes) or (kill and not moving_ready(restored_at, moving_at))
        ):
            d.alive()
            now = time.time()
            if kill:
                for line in d.log("rules1")[survivor_log_before:].splitlines():
                    if "whistle.readings partition" in line and "restored at offset" in line:
                        p = int(line.split("whistle.readings partition ")[1].split()[0])
                        restored_at.setdefault(p, now)
                if restored_at:
                    offsets = asyncio.run(committed(d.kafka.bootstrap, READINGS_GROUP))
                    for p in restored_at:
                        if offsets.get(p, -1) > before_kill.get(p, -1):
                            moving_at.setdefault(p, now)
            if len(ticket_at) < len(probes):
                fires = {a["subject_id"]: a["id"] for a in d.api.alarms(kind="smoke.fire")}
                wanted = {fires[b]: b for b in sent_at if b in fires and b not in ticket_at}
                if wanted:
                    for t in d.api.tickets():
                        for aid in t["alarm_ids"]:
                            if aid in wanted:
                                ticket_at.setdefault(wanted[aid], now)
            time.sleep(0.1)
        rep = pub.report()
        probe.drain(timeout=10)
        probe.close()
        settle(d, published=rep["acked"] + len(probes), timeout=args.drain_timeout)
        cpu1 = d.cpu(pub.proc.pid)
        latencies = sorted(ticket_at[b] - sent_at[b] for b in ticket_at)
        dead_parts = sorted(restored_at)
        tickets = d.api.tickets()
        per_alarm: dict[str, int] = {}
        for t in tickets:
            for aid in t["alarm_ids"]:
                per_alarm[aid] = per_alarm.get(aid, 0) + 1
        result.update(
            {
                "published": rep["acked"],
                "offered_msg_per_s": rep["msg_per_s"],
                "probe_event_ts": datetime.fromtimestamp(probe_ts / 1000).isoformat(),
                "probes": len(probes),
                "probe_ticket_s": [round(x, 3) for x in latencies],
                "probes_without_ticket": len(probes) - len(ticket_at),
                "kill_to_restored_s": {p: round(restored_at[p] - t_kill, 2) for p in dead_parts},
                "kill_to_committing_s": {p: round(moving_at[p] - t_kill, 2) for p in sorted(moving_at)},
                "readings_stored": readings_total(d.db_url),
                "duplicate_readings": duplicate_readings(d.db_url),
                "alarms": alarms_of(d.api),
                "tickets": len(tickets),
                "alarms_with_more_than_one_ticket": sum(1 for n in per_alarm.values() if n > 1),
                "wall_s": round(time.time() - t0, 1),
                "cpu_share": Cpu.share(cpu0, cpu1),
            }
        )
        return result
    finally:
        if pub is not None:
            pub.close()
        d.stop()


def moving_ready(restored: dict[int, float], moving: dict[int, float]) -> bool:
    return bool(restored) and set(moving) >= set(restored)


def settle(d: Deployment, *, published: int, timeout: float) -> None:
    """Every message handled, every group at the log's end and the alarms unchanged for 5 s."""
    last: list[Any] = [None, time.monotonic()]

    def done() -> bool:
        d.alive()
        now = look(d)
        if now.messages < published or any(now.lag.values()):
            return False
        sig = alarms_of(d.api)
        if sig != last[0]:
            last[0], last[1] = sig, time.monotonic()
            return False
        return time.monotonic() - last[1] >= 5.0

    until(done, timeout, interval=0.5)


def handover(args: argparse.Namespace, pg_admin: Pg, registry: Path, work: Path, start_ms: int) -> dict[str, Any]:
    print("== hand-over: uninterrupted", flush=True)
    base = handover_run(args, pg_admin, registry, work / "h-base", start_ms, kill=False)
    # --handover-control: a second run without the kill, to see how far the same input differs by itself
    kill = not args.handover_control
    print("== hand-over: " + ("one rule worker SIGKILLed" if kill else "uninterrupted again (control)"), flush=True)
    killed = handover_run(args, pg_admin, registry, work / "h-kill", start_ms, kill=kill)
    a, b = set(base["alarms"]), set(killed["alarms"])
    return {
        "uninterrupted": {k: v for k, v in base.items() if k != "alarms"},
        "killed": {k: v for k, v in killed.items() if k != "alarms"},
        "alarms_uninterrupted": len(base["alarms"]),
        "alarms_killed": len(killed["alarms"]),
        "alarms_only_uninterrupted": sorted(a - b),
        "alarms_only_killed": sorted(b - a),
        "same_alarms": base["alarms"] == killed["alarms"],
        "alarm_kinds": count_kinds(base["alarms"]),
    }


def compare_alarms(runs: list[dict[str, Any]]) -> None:
    """Each deployment's alarms against the first one's (the same input): equal, or what differs (kept short)."""
    if not runs:
        return
    first = {tuple(a) for a in runs[0]["alarms"]}
    for run in runs:
        here = {tuple(a) for a in run.pop("alarms")}
        run["alarms_total"] = len(here)
        run["alarms_same_as_first"] = here == first
        run["alarms_only_here"] = sorted(here - first, key=str)[:20]
        run["alarms_only_in_first"] = sorted(first - here, key=str)[:20]
        run["offline_only_here"] = sum(1 for a in here - first if a[0] == "device.offline")


def count_kinds(alarms: list[tuple[Any, ...]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in alarms:
        out[a[0]] = out.get(a[0], 0) + 1
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--households", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--configs", default="1x1,2x1,1x2,2x2", help="collectors x rule workers, comma-separated")
    p.add_argument("--rates", default="4000,8000,12000,0", help="step rates in msg/s; 0 = flat out")
    p.add_argument("--step-s", type=float, default=15.0, help="seconds of traffic per paced step")
    p.add_argument("--step-messages", type=int, default=200_000, help="messages of the flat-out step")
    p.add_argument("--keepup", type=float, default=0.97, help="sustained: stored rate at least this share of offered")
    p.add_argument("--lag-zero-s", type=float, default=10.0, help="sustained: every group's lag 0 this soon after")
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--no-handover", action="store_true")
    p.add_argument("--handover-messages", type=int, default=200_000)
    p.add_argument(
        "--handover-households", type=int, default=600, help="a smaller street: more event time, more alarms"
    )
    p.add_argument("--handover-control", action="store_true", help="the second hand-over run without the kill too")
    p.add_argument("--handover-rate", type=float, default=5000.0)
    p.add_argument("--kill-after-s", type=float, default=15.0)
    p.add_argument("--probe-after-s", type=float, default=1.0)
    p.add_argument("--json-out", default=None)
    p.add_argument("--publisher-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mqtt-url", help=argparse.SUPPRESS)
    p.add_argument("--start-ms", type=int, help=argparse.SUPPRESS)
    p.add_argument("--end-ms", type=int, help=argparse.SUPPRESS)
    p.add_argument("--counts", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publisher_child:
        return publisher_main(args)

    from simulators.district import build_district
    from simulators.timebase import day_start
    from whistle.timeutil import DAY_MS, local_day

    start_ms = day_start(local_day(int(time.time() * 1000))) - 7 * DAY_MS
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "shared": True},
        "households": args.households,
        "seed": args.seed,
        "partitions": args.partitions,
        "stream_start": datetime.fromtimestamp(start_ms / 1000).isoformat(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        work = Path(tmp)
        registry = work / "registry.json"
        registry.write_text(json.dumps(build_district(args.households, seed=args.seed).registry, ensure_ascii=False))
        pg = EmbeddedPostgres(work / "pg-state")
        pg_admin = Pg(pg.start(), pg.pgdata)
        try:
            if not args.no_throughput:
                result["throughput"] = throughput(args, pg_admin, registry, work, start_ms)
                compare_alarms(result["throughput"])
            if not args.no_handover:
                registry_h = work / "registry-handover.json"
                district = build_district(args.handover_households, seed=args.seed)
                registry_h.write_text(json.dumps(district.registry, ensure_ascii=False))
                result["handover_households"] = args.handover_households
                result["handover"] = handover(args, pg_admin, registry_h, work, start_ms)
        finally:
            with contextlib.suppress(Exception):
                pg.stop()
    text = json.dumps(result, indent=1, ensure_ascii=False, default=str)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
