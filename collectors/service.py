"""The collector: MQTT messages in, readings stored and handed to the bus, bad input dead-lettered.

Order per batch: decode → bind to the registry → one transaction (readings by COPY, dead
letters, unregistered devices, device state) → publish to the bus → acknowledge to the broker.
A failure before the acknowledgement leaves the messages with the broker, which delivers them
again; nothing that was acknowledged can be lost, and what is delivered twice is stored once.

Two lanes, each its own MQTT client and loop: the priority lane subscribes only to smoke and
elevator events, so a fire never waits behind a day's NB-IoT backfill queued in the bulk lane;
the bulk lane subscribes to everything and acknowledges the priority topics without handling them.

Source marks. A collector that names itself (`source`) puts a `SourceMark` on every partition of both
readings topics: when it starts (nothing published yet), at once when it takes a batch after a pause, and
every `mark_every_s` while it is busy (a batch taken within `idle_after_s`, or one not yet done with);
and a last one, `idle`, when it stops. The rules hold a partition's timers back for every collector that
marked itself lately, even one that has not delivered a reading there yet (`rules.processor`, sources).
A collector says nothing when it has nothing to do: it cannot know that the broker is not about to hand
it a share (a collector stopped just then would hold that share), so it leaves the rules to stop waiting
for it once the others' arrivals are `source_idle_ms` past its last word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg

from collectors.codecs import Limits, Reason, decode_message
from collectors.ingest import IngestServer
from collectors.mqtt import MessageSource, MqttMessage, MqttSource
from whistle.bus import TOPIC_PRIORITY, TOPIC_READINGS, Bus, TransactionalBus
from whistle.domain import Channel, DeadLetter, Reading
from whistle.mqtt import MqttEndpoint
from whistle.protocol import LIFE_SAFETY_TYPES
from whistle.registry import DeviceDirectory
from whistle.serde import SourceMark, encode_reading, encode_source_mark
from whistle.store.db import Database
from whistle.store.writers import (
    DeviceStates,
    copy_readings,
    insert_dead_letters,
    insert_readings_dedup,
    note_reading_days,
    stored_seq,
    upsert_unregistered,
)
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)
T = TypeVar("T")

SUBSCRIPTIONS = ("whistle/v1/#",)
PRIORITY_SUBSCRIPTIONS = ("whistle/v1/smoke/+/event", "whistle/v1/elevator/+/event")
_LIFE_SAFETY_NAMES = frozenset(t.value for t in LIFE_SAFETY_TYPES)


def is_priority(r: Reading) -> bool:
    """Smoke and elevator events travel on their own topic, never behind bulk meter data."""
    return r.channel is Channel.EVENT and r.device_type in LIFE_SAFETY_TYPES


def is_priority_topic(topic: str) -> bool:
    """Whether `topic` matches one of PRIORITY_SUBSCRIPTIONS (MQTT matching: `+` is one whole level)."""
    parts = topic.split("/")
    return (
        len(parts) == 5
        and parts[0] == "whistle"
        and parts[1] == "v1"
        and parts[2] in _LIFE_SAFETY_NAMES
        and parts[4] == "event"
    )


def _records(
    readings: Sequence[Reading], source: str | None = None
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Bus records of readings: (priority lane keyed by building, bulk lane keyed by household), each naming
    the collector `source` that publishes it."""
    priority = [(r.site_key.encode(), encode_reading(r, source)) for r in readings if is_priority(r)]
    bulk = [(r.key.encode(), encode_reading(r, source)) for r in readings if not is_priority(r)]
    return priority, bulk


@dataclass(slots=True)
class Batch:
    """A decoded batch, ready to be written. `redelivered[i]` is true when reading i came again."""

    readings: list[Reading] = field(default_factory=list)
    redelivered: list[bool] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    unregistered: dict[str, tuple[str, str, int, int]] = field(default_factory=dict)
    duplicates: int = 0


@dataclass(slots=True)
class CollectorStats:
    messages: int = 0
    readings: int = 0
    duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    write_failures: int = 0


async def decode_batch(messages: Sequence[MqttMessage], directory: DeviceDirectory, limits: Limits) -> Batch:
    """Decode messages, bind each reading to where its device is registered, drop repeats within the batch."""
    out = Batch()
    results = [(m, decode_message(m.topic, m.payload, received_at=m.received_at, limits=limits)) for m in messages]
    ids = sorted({r.device_id for _, r in results if r.accepted and r.device_id})
    placements = await directory.resolve(ids)
    seen: set[tuple[str, int, Channel, int]] = set()

    def refuse(m: MqttMessage, reason: Reason, detail: str, payload: bytes) -> None:
        out.dead_letters.append(DeadLetter(m.topic, reason.value, detail, payload, m.received_at))

    for m, res in results:
        if m.refused is not None:
            refuse(
                m,
                Reason(m.refused),
                f"the sender may not publish on {m.topic[:200]}",
                m.payload[: limits.max_object_bytes],
            )
            continue
        for rej in res.rejected:
            refuse(m, rej.reason, rej.detail, rej.payload)
        if not res.accepted:
            continue
        assert res.device_id is not None and res.device_type is not None
        place = placements.get(res.device_id)
        raw = m.payload[: limits.max_object_bytes]
        if place is None:
            refuse(m, Reason.UNREGISTERED_DEVICE, f"device {res.device_id} is not registered", raw)
            _, _, n, _ = out.unregistered.get(res.device_id, ("", "", 0, 0))
            out.unregistered[res.device_id] = (res.device_type.value, m.topic, n + 1, m.received_at)
            continue
        if place.device_type is not res.device_type:
            detail = f"device {res.device_id} is registered as {place.device_type}, not {res.device_type}"
            refuse(m, Reason.TYPE_MISMATCH, detail, raw)
            continue
        for d in res.accepted:
            r = Reading(
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
                batched=res.batched,
            )
            key = (d.device_id, d.ts, d.channel, stored_seq(r))
            if key in seen:
                out.duplicates += 1
                continue
            seen.add(key)
            out.readings.append(r)
            out.redelivered.append(m.dup)
    return out


@dataclass
class Lane:
    """One MQTT client and its loop. `skip` names topics another lane handles: acknowledged, not handled."""

    name: str
    source: MessageSource
    skip: Callable[[str], bool] | None = None
    linger_ms: int = 20
    # Bounds the work of one batch (decode + COPY run without yielding), so the other lane waits little.
    max_batch_bytes: int | None = 256 * 1024


def endpoint_lanes(server: IngestServer, *, linger_ms: int = 20) -> list[Lane]:
    """The embedded endpoint's two lanes: life safety (no lingering), and everything else."""
    return [
        Lane("priority", server.priority, linger_ms=0, max_batch_bytes=None),
        Lane("bulk", server.bulk, linger_ms=linger_ms),
    ]


def standard_lanes(
    endpoint: MqttEndpoint, *, client_id: str, share_group: str | None = None, linger_ms: int = 20
) -> list[Lane]:
    """The priority lane (smoke and elevator events, no lingering) and the bulk lane (everything else)."""
    priority = MqttSource(
        endpoint,
        client_id=f"{client_id}-priority",
        topics=PRIORITY_SUBSCRIPTIONS,
        share_group=f"{share_group}-priority" if share_group else None,
    )
    bulk = MqttSource(endpoint, client_id=client_id, topics=SUBSCRIPTIONS, share_group=share_group)
    return [
        Lane("priority", priority, linger_ms=0, max_batch_bytes=None),
        Lane("bulk", bulk, skip=is_priority_topic, linger_ms=linger_ms),
    ]


class Collector:
    """Runs the ingest lanes of one collector process."""

    def __init__(
        self,
        *,
        lanes: Sequence[Lane],
        db: Database,
        bus: Bus,
        directory: DeviceDirectory,
        limits: Limits,
        batch_size: int = 2000,
        state_flush_ms: int = 500,
        source: str | None = None,
        mark_every_s: float = 1.0,
        idle_after_s: float = 1.0,
    ) -> None:
        self.lanes = list(lanes)
        self.source = source  # this collector's name on its bus records (the rules' source watermarks)
        self.db = db
        self.bus = bus
        self.directory = directory
        self.limits = limits
        self.batch_size = batch_size
        self.state_flush_ms = state_flush_ms
        self.states = DeviceStates()
        self._stop: asyncio.Event | None = None
        self.stats = CollectorStats()
        self.mark_every_s = mark_every_s
        self.idle_after_s = idle_after_s
        self.clock = 0  # the latest event time of a reading this collector has published (its source marks)
        self._batches = 0  # batches taken and not yet done with
        self._last_taken = -1e9  # loop time a batch was last taken
        self._marked = -1e9  # loop time of the last busy source mark
        self._wake_marks = asyncio.Event()

    @property
    def connected(self) -> bool:
        return all(lane.source.connected for lane in self.lanes)

    async def start(self) -> None:
        await self.announce(idle=False)  # before any message: nothing it delivers can come before the mark
        for lane in self.lanes:
            await lane.source.start()

    async def stop(self) -> None:
        """Disconnect every lane and write the device state still pending (idempotent)."""
        for lane in self.lanes:
            await lane.source.stop()
        await self.announce(idle=True)  # gone: what it did not publish goes back to the broker, for another
        if len(self.states):
            try:
                async with self.db.connection() as conn:
                    await self.states.flush(conn)
            except Exception:
                log.exception("could not write the pending device state")

    @property
    def transactional(self) -> bool:
        """Whether the bus is appended to inside the write transaction (exactly once, nothing to send after)."""
        return isinstance(self.bus, TransactionalBus)

    async def write(self, batch: Batch) -> list[Reading]:
        """Store a batch in one transaction; returns the readings to publish (new, or delivered again).

        On a transactional bus the readings are appended to the bus inside that same transaction: stored and
        on the bus are then one fact, and only readings new to the database are appended."""
        fresh = batch.readings
        new = len(batch.readings)
        async with self.db.connection() as conn, conn.transaction():
            if batch.readings:
                try:
                    async with conn.transaction():
                        await copy_readings(conn, batch.readings)
                except psycopg.errors.UniqueViolation:
                    flags = await insert_readings_dedup(conn, batch.readings)
                    if self.transactional:
                        fresh = [r for r, is_new in zip(batch.readings, flags, strict=True) if is_new]
                    else:
                        # A reading stored before but delivered again (the collector stopped between commit and
                        # acknowledgement) may not have reached the bus: publish it again; consumers drop repeats.
                        fresh = [
                            r
                            for r, is_new, again in zip(batch.readings, flags, batch.redelivered, strict=True)
                            if is_new or again
                        ]
                    new = flags.count(True)
                    self.stats.duplicates += len(flags) - new
            await insert_dead_letters(conn, batch.dead_letters)
            await upsert_unregistered(conn, batch.unregistered)
            await note_reading_days(conn, fresh)
            if isinstance(self.bus, TransactionalBus):
                priority, bulk = _records(fresh, self.source)
                await self.bus.append(conn, TOPIC_PRIORITY, priority)
                await self.bus.append(conn, TOPIC_READINGS, bulk)
        self.states.add(batch.readings)
        self.stats.readings += new
        return fresh

    async def announce(self, *, idle: bool) -> bool:
        """Put this collector's source mark on every partition of the readings topics (False: not sent)."""
        if self.source is None:
            return False
        sent = asyncio.get_running_loop().time()
        mark = encode_source_mark(SourceMark(self.source, self.clock, now_ms(), idle))
        try:
            for topic in (TOPIC_PRIORITY, TOPIC_READINGS):
                await self.bus.broadcast(topic, mark)
        except Exception as exc:
            log.warning("the source mark was not sent (again within %.0f s): %s", self.mark_every_s, exc)
            return False
        if not idle:
            self._marked = sent
        return True

    async def _marks_loop(self, stop: asyncio.Event) -> None:
        """While busy, a source mark every `mark_every_s` (and at once when a batch is taken after a pause)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_marks.wait(), self.mark_every_s)
            self._wake_marks.clear()
            if not stop.is_set() and (self._batches > 0 or loop.time() - self._last_taken < self.idle_after_s):
                await self.announce(idle=False)

    async def publish(self, readings: Sequence[Reading]) -> int:
        """Put stored readings on a bus that is not transactional (sent whole again if this fails)."""
        priority, bulk = _records(readings, self.source)
        if priority:
            await self.bus.send_many(TOPIC_PRIORITY, priority)
        if bulk:
            await self.bus.send_many(TOPIC_READINGS, bulk)
        return len(priority) + len(bulk)

    async def _until_done(self, what: str, op: Callable[[], Awaitable[T]], size: int) -> T | None:
        """Retry `op` until it succeeds; None when the collector is stopping meanwhile (nothing acknowledged)."""
        delay = 0.1
        while True:
            try:
                return await op()
            except Exception:
                self.stats.write_failures += 1
                if self._stop is not None and self._stop.is_set():
                    # Stopping: leave the batch unacknowledged; it is delivered again to whoever comes next.
                    log.warning("stopping with a batch of %d messages not %s; they will be delivered again", size, what)
                    return None
                log.exception("%s a batch of %d messages failed; retrying in %.1f s", what, size, delay)
                if self._stop is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                else:
                    await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def prepare(self, lane: Lane, messages: Sequence[MqttMessage]) -> tuple[Sequence[MqttMessage], Batch] | None:
        """Acknowledge what another lane handles; decode the rest (None: nothing left)."""
        if lane.skip is not None:
            skipped = [m for m in messages if lane.skip(m.topic)]
            if skipped:
                lane.source.ack(skipped)
                messages = [m for m in messages if not lane.skip(m.topic)]
        if not messages:
            return None
        return messages, await decode_batch(messages, self.directory, self.limits)

    async def commit(self, lane: Lane, messages: Sequence[MqttMessage], batch: Batch) -> None:
        """Store, publish and acknowledge a decoded batch; each step retried until it succeeds.

        A batch whose store committed but whose publish failed is published again whole, never stored
        again: at-least-once to the bus (consumers drop repeats by id)."""
        fresh = await self._until_done("writing", lambda: self.write(batch), len(messages))
        if fresh is None:
            return
        if (
            not self.transactional
            and await self._until_done("publishing", lambda: self.publish(fresh), len(messages)) is None
        ):
            return
        lane.source.ack(messages)
        if fresh:
            newest = max(r.ts for r in fresh)
            self.clock = max(self.clock, newest)
        self.stats.messages += len(messages)
        self.stats.duplicates += batch.duplicates
        self.stats.dead_letters.update(d.reason for d in batch.dead_letters)

    async def flush_states(self) -> int:
        """Write the device state that is pending (last seen, online, battery, signal)."""
        if not len(self.states):
            return 0
        async with self.db.connection() as conn:
            return await self.states.flush(conn)

    async def _flush_states_loop(self, stop: asyncio.Event) -> None:
        """Device state reaches the database at most `state_flush_ms` after the message that changed it."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.state_flush_ms / 1000)
            try:
                await self.flush_states()
            except Exception as exc:
                log.warning("writing device state failed, kept for the next round: %s", exc)

    async def _follow_registry_loop(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """Retirements and moves made through another process reach the directory within `every_s`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            try:
                if await self.directory.refresh():
                    log.info("registry changed: %d registered devices", len(self.directory))
            except Exception as exc:
                log.warning("reading the registry's version failed; retrying: %s", exc)

    async def _run_lane(self, lane: Lane, stop: asyncio.Event) -> None:
        """Two stages: the next batch is taken and decoded while the one before it is written. Batches are
        written, published and acknowledged one at a time in the order they were taken, so a connection's
        acknowledgements keep the order of its messages and the bus the order of each device's readings;
        decoding (Python) overlaps the database's work on the batch before (the other core)."""
        ready: asyncio.Queue[tuple[Sequence[MqttMessage], Batch] | None] = asyncio.Queue(maxsize=1)

        async def take() -> None:
            while not stop.is_set():
                messages = await lane.source.get_batch(
                    self.batch_size, lane.linger_ms, timeout=0.5, max_bytes=lane.max_batch_bytes
                )
                if not messages:
                    continue
                self._batches += 1
                self._last_taken = now = asyncio.get_running_loop().time()
                if now - self._marked > self.mark_every_s + self.idle_after_s:
                    self._wake_marks.set()  # busy after a pause: say so now, not at the next tick
                try:
                    prepared = await self.prepare(lane, messages)
                except BaseException:
                    self._batches -= 1
                    raise
                if prepared is None:
                    self._batches -= 1
                else:
                    await ready.put(prepared)
            await ready.put(None)  # what was taken is written first (an error here cancels both stages)

        async def store() -> None:
            while (prepared := await ready.get()) is not None:
                try:
                    await self.commit(lane, *prepared)
                finally:
                    self._batches -= 1

        async with asyncio.TaskGroup() as tg:
            tg.create_task(take(), name=f"collector:{lane.name}:take")
            tg.create_task(store(), name=f"collector:{lane.name}:store")

    async def run(self, stop: asyncio.Event) -> None:
        """Consume on every lane until `stop` is set."""
        self._stop = stop
        await self.directory.load()
        log.info(
            "collector running with %d registered devices on lanes %s",
            len(self.directory),
            [lane.name for lane in self.lanes],
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._flush_states_loop(stop), name="collector:device-state")
            tg.create_task(self._follow_registry_loop(stop), name="collector:registry")
            tg.create_task(self._marks_loop(stop), name="collector:source-marks")
            for lane in self.lanes:
                tg.create_task(self._run_lane(lane, stop), name=f"collector:{lane.name}")
