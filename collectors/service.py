"""The collector: MQTT messages in, readings stored and handed to the bus, bad input dead-lettered.

Order per batch: decode → bind to the registry → one transaction (readings by COPY, dead
letters, device state) → publish to the bus → acknowledge to the broker. A failure before the
acknowledgement leaves the messages with the broker, which delivers them again; nothing that
was acknowledged can be lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from collectors.codecs import Limits, Reason, decode_message
from collectors.mqtt import Message, MqttSource
from whistle.bus import TOPIC_PRIORITY, TOPIC_READINGS, Bus
from whistle.domain import Channel, DeadLetter, DeviceType, Reading
from whistle.registry import DeviceDirectory
from whistle.serde import encode_reading
from whistle.store.db import Database
from whistle.store.writers import copy_readings, insert_dead_letters, upsert_device_state

log = logging.getLogger(__name__)

SUBSCRIPTIONS = ("whistle/v1/#",)
_LIFE_SAFETY = frozenset({DeviceType.SMOKE, DeviceType.ELEVATOR})


def is_priority(r: Reading) -> bool:
    """Smoke and elevator events travel on their own topic, never behind bulk meter data."""
    return r.channel is Channel.EVENT and r.device_type in _LIFE_SAFETY


@dataclass(slots=True)
class Batch:
    """A decoded batch, ready to be written."""

    readings: list[Reading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class CollectorStats:
    messages: int = 0
    readings: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    write_failures: int = 0


async def decode_batch(messages: Sequence[Message], directory: DeviceDirectory, limits: Limits) -> Batch:
    """Decode messages and bind each reading to where its device is registered."""
    out = Batch()
    results = [(m, decode_message(m.topic, m.payload, received_at=m.received_at, limits=limits)) for m in messages]
    ids = sorted({r.device_id for _, r in results if r.accepted and r.device_id})
    placements = await directory.resolve(ids)

    def refuse(m: Message, reason: Reason, detail: str, payload: bytes) -> None:
        out.dead_letters.append(DeadLetter(m.topic, reason.value, detail, payload, m.received_at))

    for m, res in results:
        for rej in res.rejected:
            refuse(m, rej.reason, rej.detail, rej.payload)
        if not res.accepted:
            continue
        assert res.device_id is not None and res.device_type is not None
        place = placements.get(res.device_id)
        raw = m.payload[: limits.max_object_bytes]
        if place is None:
            refuse(m, Reason.UNREGISTERED_DEVICE, f"device {res.device_id} is not registered", raw)
            continue
        if place.device_type is not res.device_type:
            detail = f"device {res.device_id} is registered as {place.device_type}, not {res.device_type}"
            refuse(m, Reason.TYPE_MISMATCH, detail, raw)
            continue
        for d in res.accepted:
            out.readings.append(
                Reading(
                    d.device_id,
                    d.device_type,
                    d.channel,
                    d.ts,
                    m.received_at,
                    d.values,
                    d.seq,
                    place.household_id,
                    place.building_id,
                    place.grid_id,
                )
            )
    return out


class Collector:
    """Runs the ingest loop of one collector process."""

    def __init__(
        self,
        *,
        source: MqttSource,
        db: Database,
        bus: Bus,
        directory: DeviceDirectory,
        limits: Limits,
        batch_size: int = 2000,
        linger_ms: int = 20,
    ) -> None:
        self.source = source
        self.db = db
        self.bus = bus
        self.directory = directory
        self.limits = limits
        self.batch_size = batch_size
        self.linger_ms = linger_ms
        self.stats = CollectorStats()

    async def write(self, batch: Batch) -> None:
        """Store a batch in one transaction, then publish its readings to the bus."""
        async with self.db.connection() as conn, conn.transaction():
            await copy_readings(conn, batch.readings)
            await insert_dead_letters(conn, batch.dead_letters)
            await upsert_device_state(conn, batch.readings)
        priority = [(r.key.encode(), encode_reading(r)) for r in batch.readings if is_priority(r)]
        bulk = [(r.key.encode(), encode_reading(r)) for r in batch.readings if not is_priority(r)]
        if priority:
            await self.bus.send_many(TOPIC_PRIORITY, priority)
        if bulk:
            await self.bus.send_many(TOPIC_READINGS, bulk)

    async def handle(self, messages: Sequence[Message]) -> None:
        """Decode, write and acknowledge one batch; retries the write until it succeeds or we stop."""
        batch = await decode_batch(messages, self.directory, self.limits)
        delay = 0.1
        while True:
            try:
                await self.write(batch)
                break
            except Exception:
                self.stats.write_failures += 1
                log.exception("writing a batch of %d readings failed; retrying in %.1f s", len(messages), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.source.ack(messages)
        self.stats.messages += len(messages)
        self.stats.readings += len(batch.readings)
        self.stats.dead_letters.update(d.reason for d in batch.dead_letters)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set."""
        await self.directory.load()
        log.info("collector running with %d registered devices", len(self.directory))
        while not stop.is_set():
            messages = await self.source.get_batch(self.batch_size, self.linger_ms, timeout=0.5)
            if messages:
                await self.handle(messages)
