"""Live device traffic for a generated district, published over MQTT at QoS 1.

Event times are wall-clock time, so every message is within the contract's bounds; `speed`
multiplies how often things happen (a meter's 15-minute reading comes every 15/speed
minutes, incidents `speed` times as often). Smoke incidents alternate between nuisance
alarms that clear within a minute and fires confirmed by a second detector.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt import MqttEndpoint
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)

METER_INTERVAL_S = 900.0
HEARTBEAT_INTERVAL_S = 3600.0


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


@dataclass
class LiveStats:
    messages: int = 0
    fires: int = 0
    nuisances: int = 0
    incidents: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Meter:
    device_id: str
    kind: str
    total: float
    next_at: float
    seq: int = 0


async def run_live(
    registry: dict[str, Any],
    publisher: Publisher,
    stop: asyncio.Event,
    *,
    speed: float = 60.0,
    incident_every_s: float = 20.0,
    seed: int = 1,
    duration_s: float | None = None,
    on_incident: Callable[[dict[str, Any]], None] | None = None,
) -> LiveStats:
    """Publish until `stop` is set or `duration_s` has passed."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    stats = LiveStats()
    meters = [
        _Meter(d["id"], d["type"], rng.uniform(10, 500), t0 + rng.uniform(0, METER_INTERVAL_S / speed))
        for d in registry["devices"]
        if d["type"] in ("water", "power")
    ]
    smoke_by_building: dict[str, list[str]] = {}
    for d in registry["devices"]:
        if d["type"] == "smoke":
            smoke_by_building.setdefault(d["building_id"], []).append(d["id"])
    buildings = sorted(smoke_by_building)
    next_incident = t0 + min(3.0, incident_every_s)
    pending: list[tuple[float, str, dict[str, Any]]] = []
    next_heartbeat = t0
    while not stop.is_set():
        now = loop.time()
        if duration_s is not None and now - t0 >= duration_s:
            break
        ts = now_ms()
        for m in meters:
            if now >= m.next_at:
                m.seq += 1
                if m.kind == "water":
                    m.total += rng.uniform(0.0, 0.02)
                    payload = {"ts": ts, "seq": m.seq, "total_m3": round(m.total, 4)}
                else:
                    m.total += rng.uniform(0.0, 0.3)
                    payload = {"ts": ts, "seq": m.seq, "total_kwh": round(m.total, 3)}
                publisher.publish(f"whistle/v1/{m.kind}/{m.device_id}/data", payload)
                m.next_at = now + METER_INTERVAL_S / speed
        if now >= next_heartbeat:
            for detectors in smoke_by_building.values():
                for dev in detectors:
                    publisher.publish(f"whistle/v1/smoke/{dev}/status", {"ts": ts, "battery_pct": 90})
            next_heartbeat = now + HEARTBEAT_INTERVAL_S / speed
        if buildings and now >= next_incident:
            b = rng.choice(buildings)
            first, *others = smoke_by_building[b]
            fire = bool(others) and rng.random() < 0.5
            incident = {"kind": "smoke.fire" if fire else "smoke.nuisance", "building_id": b, "ts": ts}
            stats.incidents.append(incident)
            if on_incident:
                on_incident(incident)
            publisher.publish(f"whistle/v1/smoke/{first}/event", {"ts": ts, "event": "alarm"})
            if fire:
                stats.fires += 1
                pending.append((now + 8.0, f"whistle/v1/smoke/{others[0]}/event", {"event": "alarm"}))
            else:
                stats.nuisances += 1
                pending.append((now + 20.0, f"whistle/v1/smoke/{first}/event", {"event": "alarm_clear"}))
            next_incident = now + incident_every_s
        due = [p for p in pending if p[0] <= now]
        for p in due:
            pending.remove(p)
            publisher.publish(p[1], {"ts": now_ms(), **p[2]})
        stats.messages = publisher.sent
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return stats
