"""Publishing a simulation: paced live (demo and `whistle simulate --speed`) or as fast as the broker takes it.

The messages come from `stream.Simulation` in send order; this module only decides *when* each
goes out and over which connection:

- live: a `LiveClock` runs simulated time at `speed` simulated seconds per real second from
  the run's start, and never ahead of the wall clock once it has caught up with it, so no
  message ever carries a future timestamp (the collector refuses those). The demo starts its
  street an hour of real time (at the chosen speed) in the past, so the clock catches up with
  the present as the hour ends and then runs in real time.
- backfill: everything as fast as the broker acknowledges it, in send order.

The demo also runs a `SmokeDrill`: every `--incident-every` real seconds a smoke incident in a
random building, alternately a nuisance alarm that clears within a minute or a fire confirmed
by a second detector, so the screen always has something happening.

`Publisher` (paho-mqtt, QoS 1, its own network thread) serves the demo, whose embedded broker
runs in the same event loop; `simulate` uses `wire.WireClient` (blocking, pre-encoded packets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.district import District
from simulators.scenario import FIRE, NUISANCE_COOKING
from simulators.stream import SimMessage, Simulation
from simulators.timebase import ANCHOR_MS
from simulators.wire import WireClient
from whistle.mqtt import MqttEndpoint
from whistle.protocol import device_topic
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)

DRILL_STREAM = 50


class Publisher:
    """A paho client on its own network thread, publishing JSON at QoS 1.

    paho numbers QoS 1 messages with 16-bit ids: with more than 65,535 unacknowledged in its queue
    it reuses ids and stalls without an error. `publish` refuses past `max_pending`; `send` waits.
    """

    max_pending = 20_000

    def __init__(self, endpoint: MqttEndpoint, client_id: str) -> None:
        self.endpoint = endpoint
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if endpoint.username:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(100)
        self._connected = threading.Event()
        self._client.on_connect = lambda c, u, f, rc, p=None: self._connected.set() if not rc.is_failure else None
        self._client.on_publish = self._on_publish
        self.sent = 0
        self.acked = 0

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        self.acked += 1

    @property
    def pending(self) -> int:
        return self.sent - self.acked

    async def start(self, timeout: float = 10.0) -> None:
        self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self._client.loop_start()
        if not await asyncio.to_thread(self._connected.wait, timeout):
            self._client.loop_stop()
            raise ConnectionError(f"MQTT broker {self.endpoint.host}:{self.endpoint.port} not reachable")

    def publish(self, topic: str, payload: dict[str, Any] | bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        if self.pending >= self.max_pending:
            raise OverflowError(f"{self.pending} messages unacknowledged: use `await send(...)` to pace")
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self.sent += 1
        return self._client.publish(topic, data, qos=qos)

    async def send(self, topic: str, payload: dict[str, Any] | bytes, qos: int = 1) -> None:
        """Publish, first waiting (bounded: 60 s) while `max_pending` messages are unacknowledged."""
        deadline = asyncio.get_running_loop().time() + 60
        while self.pending >= self.max_pending // 2:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the broker acknowledged nothing for 60 s")
            await asyncio.sleep(0.01)
        self.publish(topic, payload, qos)

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Wait (bounded) for queued messages to be acknowledged, then disconnect."""
        deadline = asyncio.get_running_loop().time() + flush_timeout
        loop = asyncio.get_running_loop()
        while (self.pending > 0 or self._client.want_write()) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)


def live_start(now: int, speed: float, *, span_real_s: float | None, max_back_days: float = 40.0) -> int:
    """Default start of a live run: early enough that, at `speed`, the simulated clock reaches the
    present when `span_real_s` of real time has passed (never more than `max_back_days` back)."""
    if span_real_s is None or speed <= 1.0:
        return now - now % 60_000
    back = min(span_real_s * (speed - 1.0) * 1000.0, max_back_days * 86_400_000)
    start = now - int(back)
    return start - start % 60_000


class LiveClock:
    """Simulated time: `speed` simulated seconds per real second from `start_ms`, capped at the wall
    clock once it catches up with it (when it started in the past)."""

    def __init__(
        self,
        start_ms: int,
        speed: float,
        *,
        wall_ms: Callable[[], int] = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start_ms = start_ms
        self.speed = speed
        self._mono = monotonic
        self._m0 = monotonic()
        self._w0 = wall_ms()
        self.capped = start_ms <= self._w0

    def elapsed(self) -> float:
        return self._mono() - self._m0

    def now(self) -> int:
        t = self.elapsed()
        sim = self.start_ms + int(t * self.speed * 1000)
        return min(sim, self._w0 + int(t * 1000)) if self.capped else sim

    def seconds_until(self, sim_ms: int) -> float:
        """Real seconds until the simulated clock reaches `sim_ms`."""
        t = (sim_ms - self.start_ms) / (self.speed * 1000)
        if self.capped:
            t = max(t, (sim_ms - self._w0) / 1000)
        return max(0.0, t - self.elapsed())


@dataclass(slots=True)
class LiveStats:
    messages: int = 0
    fires: int = 0
    nuisances: int = 0
    sim_ms: int = 0
    incidents: list[dict[str, Any]] = field(default_factory=list)


class SmokeDrill:
    """The demo's smoke incidents, every `every_s` real seconds: a nuisance alarm that clears within
    a minute, or a fire (a second detector of the building confirms it) — at random, half each."""

    def __init__(self, district: District, seed: int, every_s: float) -> None:
        self.every_s = every_s
        self.rng = np.random.default_rng([seed, DRILL_STREAM])
        self.by_building: dict[str, list[str]] = {}
        for i, b in zip(district.smoke.ids, district.smoke.building.tolist(), strict=True):
            self.by_building.setdefault(district.building_ids[b], []).append(i)
        self.buildings = sorted(self.by_building)
        self.next_at = min(3.0, every_s)

    def due(self, real_elapsed: float, sim_now: int) -> tuple[list[SimMessage], dict[str, Any] | None]:
        """The messages of an incident starting now (if one is due), and its truth record."""
        if not self.buildings or real_elapsed < self.next_at:
            return [], None
        self.next_at = real_elapsed + self.every_s
        b = self.buildings[int(self.rng.integers(0, len(self.buildings)))]
        first, *others = self.by_building[b]
        fire = bool(others) and bool(self.rng.random() < 0.5)
        msgs = [_event(sim_now, first, {"event": "alarm", "obscuration_db_m": 3.5 if fire else 1.2})]
        if fire:
            t2 = sim_now + int(self.rng.uniform(20, 90) * 1000)
            msgs.append(_event(t2, others[0], {"event": "alarm", "obscuration_db_m": 5.0}))
            end = None
        else:
            t2 = sim_now + int(self.rng.uniform(15, 50) * 1000)
            msgs.append(_event(t2, first, {"event": "alarm_clear"}))
            end = t2
        incident = {
            "kind": FIRE if fire else NUISANCE_COOKING,
            "subject_type": "building" if fire else "device",
            "subject_ids": [b] if fire else [first],
            "start": sim_now,
            "end": end,
            "confounder": not fire,
            "could_be_mistaken_for": [] if fire else [FIRE],
            "details": {"drill": True, "detectors": [first, others[0]] if fire else [first], "building_id": b},
        }
        return msgs, incident


def _event(ts: int, device: str, fields: dict[str, Any]) -> SimMessage:
    doc = {"ts": ts, "seq": ts - ANCHOR_MS, **fields}
    return SimMessage(ts, device_topic("smoke", device, "event"), json.dumps(doc, separators=(",", ":")).encode())


def _take(it: Iterator[SimMessage], n: int) -> list[SimMessage]:
    out: list[SimMessage] = []
    for m in it:
        out.append(m)
        if len(out) >= n:
            break
    return out


@dataclass(slots=True)
class BackfillProgress:
    """How far a backfill is: messages handed to the publisher, and the street's time they reached."""

    start_ms: int
    until_ms: int
    messages: int = 0
    sim_ms: int = 0
    done: bool = False

    @property
    def share(self) -> float:
        span = self.until_ms - self.start_ms
        return 1.0 if self.done or span <= 0 else min(1.0, max(0.0, (self.sim_ms - self.start_ms) / span))


async def backfill(
    messages: Iterator[SimMessage],
    publisher: Publisher,
    stop: asyncio.Event,
    progress: BackfillProgress,
    *,
    keep: Callable[[SimMessage], bool] | None = None,
) -> list[SimMessage]:
    """Publish the messages sent before `progress.until_ms` as fast as the broker acknowledges them (those
    `keep` refuses are skipped); returns the messages of the chunk read past it, for the live run to go on with."""
    while not stop.is_set():
        chunk = await asyncio.to_thread(_take, messages, 2000)
        if not chunk:
            break
        for i, m in enumerate(chunk):
            if m.send_ms >= progress.until_ms:
                progress.done = True
                return chunk[i:]
            if keep is None or keep(m):
                await publisher.send(m.topic, m.payload)
                progress.messages += 1
            progress.sim_ms = m.send_ms
        await asyncio.sleep(0)
    progress.done = True
    return []


async def run_live(
    sim: Simulation,
    publisher: Publisher,
    stop: asyncio.Event,
    *,
    speed: float = 60.0,
    incident_every_s: float | None = 20.0,
    duration_s: float | None = None,
    on_incident: Callable[[dict[str, Any]], None] | None = None,
    clock: LiveClock | None = None,
    messages: Iterator[SimMessage] | None = None,
    stats: LiveStats | None = None,
) -> LiveStats:
    """Publish `sim` paced by a `LiveClock` (and the smoke drill) until `stop`, `duration_s` or its end.

    `clock` defaults to one starting at the simulation's start; `messages` to all of the simulation's (after
    a `backfill`: what it left, then the rest)."""
    clock = clock or LiveClock(sim.start_ms, speed)
    drill = SmokeDrill(sim.district, sim.seed, incident_every_s) if incident_every_s else None
    stats = stats or LiveStats()
    it = messages if messages is not None else sim.messages()
    queue: deque[SimMessage] = deque()
    extra: list[SimMessage] = []  # drill follow-ups waiting for their time
    exhausted = False
    while not stop.is_set():
        if duration_s is not None and clock.elapsed() >= duration_s:
            break
        now = clock.now()
        stats.sim_ms = now
        if not queue and not exhausted:
            chunk = await asyncio.to_thread(_take, it, 2000)
            exhausted = not chunk
            queue.extend(chunk)
        if exhausted and not queue and not extra:
            break
        if drill:
            msgs, incident = drill.due(clock.elapsed(), now)
            if incident:
                stats.incidents.append(incident)
                stats.fires += incident["kind"] == FIRE
                stats.nuisances += incident["kind"] != FIRE
                if on_incident:
                    on_incident(incident)
            extra.extend(msgs)
        for m in [m for m in extra if m.send_ms <= now]:
            extra.remove(m)
            await publisher.send(m.topic, m.payload)
            stats.messages += 1
        sent = 0
        while queue and queue[0].send_ms <= now and sent < 5000:
            m = queue.popleft()
            await publisher.send(m.topic, m.payload)
            stats.messages += 1
            sent += 1
        if sent >= 5000:
            await asyncio.sleep(0)
            continue
        wait = 0.2
        if queue:
            wait = min(wait, clock.seconds_until(queue[0].send_ms))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.005, wait))
    return stats


# Synchronous publishing over raw sockets (`whistle simulate`) ------------------------------------


@dataclass(slots=True)
class PublishReport:
    messages: int = 0
    acked: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    last_send_ms: int | None = None
    drill: int = 0

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "acked": self.acked,
            "seconds": round(self.seconds, 2),
            "msg_per_s": round(self.msg_per_s),
            "cpu_s": round(self.cpu_s, 2),
            "last_send_ms": self.last_send_ms,
            "drill_incidents": self.drill,
        }


def connect_all(endpoint: MqttEndpoint, client_id: str, connections: int, qos: int) -> list[WireClient]:
    clients = [
        WireClient(
            endpoint.host,
            endpoint.port,
            f"{client_id}-{i}",
            username=endpoint.username,
            password=endpoint.password,
            qos=qos,
        )
        for i in range(connections)
    ]
    for c in clients:
        c.connect()
    return clients


def publish(
    sim: Simulation,
    clients: list[WireClient],
    *,
    clock: LiveClock | None,
    should_stop: Callable[[], bool],
    duration_s: float | None = None,
    drill: SmokeDrill | None = None,
    on_incident: Callable[[dict[str, Any]], None] | None = None,
    chunk: int = 500,
) -> PublishReport:
    """Publish a simulation: paced by `clock`, or (None) as fast as the broker acknowledges.

    Messages go out over `clients` in send order; a device's messages always use the same
    connection, so each device's stream stays in order at the broker.
    """
    report = PublishReport()
    t0 = time.monotonic()
    cpu0 = time.process_time()
    pending: list[list[tuple[str, bytes]]] = [[] for _ in clients]
    route: dict[str, int] = {}
    n_c = len(clients)

    def flush(i: int) -> None:
        if pending[i]:
            clients[i].publish_many(pending[i])
            pending[i] = []

    def put(m: SimMessage) -> None:
        i = route.get(m.topic)
        if i is None:
            i = route.setdefault(m.topic, zlib.crc32(m.topic.split("/")[3].encode()) % n_c)
        pending[i].append((m.topic, m.payload))
        report.messages += 1
        report.last_send_ms = m.send_ms
        if len(pending[i]) >= chunk:
            flush(i)

    extra: list[SimMessage] = []

    def stopped() -> bool:
        return should_stop() or (duration_s is not None and time.monotonic() - t0 >= duration_s)

    def tick() -> None:
        assert clock is not None
        if drill:
            msgs, incident = drill.due(clock.elapsed(), clock.now())
            if incident:
                report.drill += 1
                if on_incident:
                    on_incident(incident)
            extra.extend(msgs)
        if extra:
            now = clock.now()
            for e in [e for e in extra if e.send_ms <= now]:
                extra.remove(e)
                put(e)

    def wait_until(send_ms: int) -> bool:
        assert clock is not None
        tick()
        while clock.now() < send_ms:
            for i in range(n_c):
                flush(i)
                clients[i].ping_if_idle()
            if stopped():
                return False
            time.sleep(min(0.2, max(0.001, clock.seconds_until(send_ms))))
            tick()
        return True

    for m in sim.messages():
        if stopped() or (clock is not None and not wait_until(m.send_ms)):
            break
        put(m)
    for i in range(n_c):
        flush(i)
    for c in clients:
        c.drain(timeout=60)
        report.acked += c.stats.acked
    report.seconds = time.monotonic() - t0
    report.cpu_s = time.process_time() - cpu0
    return report
