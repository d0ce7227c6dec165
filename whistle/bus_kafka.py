"""The Kafka backend of the bus (aiokafka), with the semantics `MemoryBus` has in one process.

Producing. `send_many` is the hot path (thousands of records per call). It does not hand each
record to `AIOKafkaProducer.send`; it places each key with `whistle.bus.partition_for` (the murmur2
of Kafka's default partitioner, so a key lands where a Java producer and `MemoryBus` put it), fills
one closed `BatchBuilder` per partition (a closed batch is sent at once, no linger), submits them,
and returns only when the broker has acknowledged every batch. The producer is idempotent with
acks=all, so a retried batch is neither duplicated nor reordered within its partition.

Delivery deadline. An idempotent aiokafka producer retries a batch until the broker takes it and never
gives up on its own, so a producer that stopped making progress would hold its caller forever. A send
(`send_many`, `broadcast`) that is not acknowledged within `delivery_timeout_ms` (by default twice the
request timeout, as Kafka's own `delivery.timeout.ms` bounds a send) raises `DeliveryTimeout`, and the
producer is replaced: it is closed (what it still holds is dropped) and the next send starts a new one (or
raises `ConnectionError` while the cluster is unreachable). `stop()` waits for the producer's last batches
at most the request timeout too. The records may or may not be on the log:
the caller sends them again (the collector does), and consumers drop repeats by id.

Topics. `ensure_topics` creates the topics the bus is asked to use, with the bus's partition count;
a topic that already exists is left as it is (a key is then placed by the partition count the topic
really has, as Kafka's partitioner does). `send_many` and `KafkaConsumer.start` ensure their topics
lazily, once per topic per bus. The replication factor is min(3, brokers in the cluster) unless given.

Consuming. A `KafkaConsumer` is one member of a consumer group with manual commits only: it resumes
from the group's committed offsets (the earliest record where the group has none), so whatever was
not committed is delivered again. Records come back as `whistle.bus.Record`s keyed by
`whistle.bus.TopicPartition`, aiokafka's types never leak out. Rebalances are aiokafka's: `start`
returns once the member has its first assignment; a later rebalance (a member joins or leaves) is
noticed on the next heartbeat (every second by default) and, as the classic eager protocol does,
moves every position back to the committed offset, of the partitions a member keeps too, so seeks
are forgotten and the uncommitted records come again.
A commit of a partition this member no longer owns is dropped (logged), not raised: its new owner
resumes from the group's last commit, so those records come again, which is at-least-once.

Priority. `MemoryConsumer` drains its topics in the order given (the first topic first). A Kafka
consumer fetches its topics together with no order among them, so with Kafka a priority lane is a
consumer of its own: the callers run one consumer per topic, and a priority record never waits
behind bulk records. (Lanes are still better in separate groups: members of one group rebalance
together, so bulk members joining or leaving pause the priority lane for that rebalance.)

Extras beyond the `Bus` protocol: `end_offsets_async(topic)` and `committed_async(group, tp)`, the
awaitable counterparts of `MemoryBus.end_offsets`/`committed` (they ask the broker).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    TopicAlreadyExistsError,
    for_code,
)

from whistle.bus import Record, TopicPartition, partition_for, record_digest
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)


class DeliveryTimeout(TimeoutError):
    """Kafka did not acknowledge a send within the delivery deadline; the records may or may not be on the log."""


# One produce batch per partition and call, up to this size (the broker's default
# message.max.bytes is 1 MiB; a batch must stay below it).
MAX_BATCH_BYTES = 512 * 1024


class KafkaBus:
    """A producer, an admin client and a factory of group consumers on one Kafka cluster."""

    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        *,
        client_id: str = "whistle",
        replication_factor: int | None = None,
        linger_ms: int = 5,
        request_timeout_ms: int = 30_000,
        delivery_timeout_ms: int | None = None,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.client_id = client_id
        self.replication_factor = replication_factor
        self.linger_ms = linger_ms
        self.request_timeout_ms = request_timeout_ms
        self.delivery_timeout_ms = delivery_timeout_ms if delivery_timeout_ms is not None else 2 * request_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._producer: Any = None
        self._admin: Any = None
        self._offsets_reader: Any = None
        self._ready_topics: set[str] = set()
        self._topics_lock = asyncio.Lock()
        self._producer_lock = asyncio.Lock()
        self._running = False
        self.producers_replaced = 0  # producers retired after a send missed the delivery deadline

    @property
    def running(self) -> bool:
        """True between a successful `start()` and `stop()`."""
        return self._running

    async def start(self) -> None:
        """Connect the producer and the admin client; ConnectionError if the cluster is unreachable."""
        if self._running:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            await admin.start()
            producer = await self._new_producer()
        except BaseException as exc:
            await admin.close()
            if isinstance(exc, KafkaConnectionError):
                raise ConnectionError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
            raise
        self._admin, self._producer, self._running = admin, producer, True

    async def _new_producer(self) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
            max_batch_size=MAX_BATCH_BYTES,
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _current_producer(self) -> Any:
        """The producer, a new one if the last was retired (ConnectionError while the cluster is unreachable)."""
        if not self._running:
            raise RuntimeError("bus is not running")
        if self._producer is not None:
            return self._producer
        async with self._producer_lock:
            if self._producer is None:
                try:
                    self._producer = await self._new_producer()
                except KafkaConnectionError as exc:
                    raise ConnectionError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
                log.info("a new Kafka producer replaces the one retired")
            return self._producer

    async def _retire(self, producer: Any, why: DeliveryTimeout) -> None:
        """Close `producer`, dropping what it still holds; the next send starts a new producer."""
        async with self._producer_lock:
            if self._producer is not producer:
                return  # another send retired it already
            self._producer = None
            self.producers_replaced += 1
        log.warning("%s: retiring the Kafka producer, its unacknowledged batches are sent again", why)
        await self._close_producer(producer)

    async def _close_producer(self, producer: Any) -> None:
        """Stop `producer`, waiting at most the request timeout for what it still has to deliver."""
        try:
            await asyncio.wait_for(producer.stop(), self.request_timeout_ms / 1000)
        except Exception as exc:
            # stop() waits for every batch the producer holds, however long the broker keeps them waiting.
            # aiokafka has no public abort: end its sender and close its connections, dropping the batches.
            log.warning("the Kafka producer did not stop in time (%r); closing its connections", exc)
            sender = getattr(producer._sender, "sender_task", None)
            if sender is not None:
                sender.cancel()
            await producer.client.close()

    async def _delivered(self, producer: Any, what: str, send: Awaitable[None]) -> None:
        """Await `send` (its batches handed to `producer` and acknowledged) within the delivery deadline."""
        deadline = asyncio.timeout(self.delivery_timeout_ms / 1000)
        try:
            async with deadline:
                await send
        except TimeoutError:
            if not deadline.expired():
                raise
            why = DeliveryTimeout(f"Kafka did not acknowledge {what} within {self.delivery_timeout_ms / 1000:.0f} s")
            await self._retire(producer, why)
            raise why from None

    async def stop(self) -> None:
        """Flush and close everything; safe to call more than once."""
        producer, admin, reader = self._producer, self._admin, self._offsets_reader
        self._producer = self._admin = self._offsets_reader = None
        self._running = False
        self._ready_topics.clear()
        try:
            if producer is not None:
                await self._close_producer(producer)
        finally:
            if reader is not None:
                await reader.stop()
            if admin is not None:
                await admin.close()

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _require(self) -> Any:
        """The admin client (RuntimeError unless the bus is running)."""
        if not self._running:
            raise RuntimeError("bus is not running")
        return self._admin

    # topics ---------------------------------------------------------------------------

    async def ensure_topics(self, names: Iterable[str]) -> None:
        """Create the topics that do not exist yet with the bus's partition count (once per topic)."""
        wanted = [n for n in dict.fromkeys(names) if n not in self._ready_topics]
        if not wanted:
            return
        admin = self._require()
        async with self._topics_lock:
            wanted = [n for n in wanted if n not in self._ready_topics]
            if not wanted:
                return
            replication = self.replication_factor or await self._default_replication(admin)
            response = await admin.create_topics([NewTopic(n, self.partitions, replication) for n in wanted])
            for topic, code, *detail in response.topic_errors:
                if code and code != TopicAlreadyExistsError.errno:
                    message = detail[0] if detail and detail[0] else ""
                    raise for_code(code)(f"cannot create topic {topic!r}: {message}")
            self._ready_topics.update(wanted)

    @staticmethod
    async def _default_replication(admin: Any) -> int:
        cluster = await admin.describe_cluster()
        return max(1, min(3, len(cluster["brokers"])))

    # producing ------------------------------------------------------------------------

    async def send_many(self, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Append (key, value) records; returns when the broker has acknowledged all of them (acks=all).
        DeliveryTimeout if that takes longer than the delivery deadline (send them again)."""
        await self.ensure_topics((topic,))
        producer = await self._current_producer()
        await self._delivered(producer, f"records for {topic}", self._send_many(producer, topic, items))

    async def _send_many(self, producer: Any, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        count = len(await producer.partitions_for(topic))
        ts = now_ms()
        batches: dict[int, Any] = {}
        acks: list[asyncio.Future[Any]] = []
        for key, value in items:
            p = partition_for(key, count)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(timestamp=ts, key=key, value=value) is None:
                # Full: send it, start the partition's next batch. Waits only while the previous
                # batch of this partition is still queued in the producer (backpressure).
                acks.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                if batch.append(timestamp=ts, key=key, value=value) is None:
                    raise ValueError(f"a record of {len(key) + len(value)} bytes does not fit in a batch")
        for p, batch in batches.items():
            if batch.record_count():
                batch.close()  # closed: the producer sends it at once instead of lingering
                acks.append(await producer.send_batch(batch, topic, partition=p))
        results = await asyncio.gather(*acks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def broadcast(self, topic: str, value: bytes) -> None:
        """One record with an empty key on every partition of `topic` (acknowledged by the broker; DeliveryTimeout
        past the delivery deadline)."""
        await self.ensure_topics((topic,))
        producer = await self._current_producer()
        await self._delivered(
            producer, f"a record on every partition of {topic}", self._broadcast(producer, topic, value)
        )

    async def _broadcast(self, producer: Any, topic: str, value: bytes) -> None:
        ts = now_ms()
        acks: list[asyncio.Future[Any]] = []
        for p in sorted(await producer.partitions_for(topic)):
            batch = producer.create_batch()
            batch.append(timestamp=ts, key=b"", value=value)
            batch.close()
            acks.append(await producer.send_batch(batch, topic, partition=p))
        for result in await asyncio.gather(*acks, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    # consuming ------------------------------------------------------------------------

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        """A member of `group` subscribed to `topics`; it joins the group on `start()`."""
        return KafkaConsumer(self, group, tuple(topics))

    async def end_offsets_async(self, topic: str) -> list[int]:
        """The offset the next record of each partition will get (asks the broker)."""
        await self.ensure_topics((topic,))
        producer = await self._current_producer()
        partitions = sorted(await producer.partitions_for(topic))
        reader = await self._reader()
        ends = await reader.end_offsets([KafkaTopicPartition(topic, p) for p in partitions])
        return [int(ends[KafkaTopicPartition(topic, p)]) for p in partitions]

    async def _reader(self) -> Any:
        if self._offsets_reader is None:
            reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.client_id}-offsets",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=self.request_timeout_ms,
            )
            try:
                await reader.start()
            except BaseException:
                await reader.stop()
                raise
            self._offsets_reader = reader
        return self._offsets_reader

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """(the log start offset, the end offset) of a partition, as the broker has them now."""
        self._require()
        await self.ensure_topics((tp.topic,))
        reader = await self._reader()
        ktp = KafkaTopicPartition(tp.topic, tp.partition)
        start = (await reader.beginning_offsets([ktp]))[ktp]
        end = (await reader.end_offsets([ktp]))[ktp]
        return int(start), int(end)

    async def fingerprint(self, tp: TopicPartition, offset: int) -> str | None:
        """A digest of the record at `offset`, read with a short-lived assigned consumer; None if not held."""
        start, end = await self.bounds(tp)
        if not start <= offset < end:
            return None
        ktp = KafkaTopicPartition(tp.topic, tp.partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-fingerprint",
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=self.request_timeout_ms,
        )
        await consumer.start()
        try:
            consumer.assign([ktp])
            consumer.seek(ktp, offset)
            async with asyncio.timeout(self.request_timeout_ms / 1000):
                while True:
                    got = await consumer.getmany(ktp, timeout_ms=1000, max_records=1)
                    for rec in got.get(ktp, ()):
                        if rec.offset == offset:
                            return self.mark(_record(rec))
                        if rec.offset > offset:
                            return None  # compacted or a transaction marker: nothing at that offset
        finally:
            await consumer.stop()

    async def partitions_of(self, topic: str) -> int:
        await self.ensure_topics((topic,))
        producer = await self._current_producer()
        return len(await producer.partitions_for(topic))

    def mark(self, record: Record) -> str:
        r = record
        return record_digest(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)

    async def committed_async(self, group: str, tp: TopicPartition) -> int | None:
        """The group's committed offset of a partition, None if it has none (asks the broker)."""
        admin = self._require()
        ktp = KafkaTopicPartition(tp.topic, tp.partition)
        offsets = await admin.list_consumer_group_offsets(group, partitions=[ktp])
        found = offsets.get(ktp)
        return None if found is None or found.offset < 0 else int(found.offset)


def _record(rec: Any) -> Record:
    return Record(rec.topic, rec.partition, rec.offset, rec.key or b"", rec.value or b"", rec.timestamp)


class KafkaConsumer:
    """A member of a consumer group on a `KafkaBus`: manual commits, earliest offset when none is committed."""

    def __init__(self, bus: KafkaBus, group: str, topics: tuple[str, ...]) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self._bus = bus
        self.group = group
        self.topics = topics
        self._consumer: Any = None

    async def start(self) -> None:
        """Ensure the topics, join the group; returns once this member has its first assignment."""
        if self._consumer is not None:
            return
        bus = self._bus
        await bus.ensure_topics(self.topics)
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=bus.bootstrap,
            client_id=f"{bus.client_id}-{self.group}",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=bus.session_timeout_ms,
            heartbeat_interval_ms=bus.heartbeat_interval_ms,
            request_timeout_ms=bus.request_timeout_ms,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        """Leave the group (its partitions go to the other members); safe to call more than once."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> KafkaConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _require(self) -> Any:
        if self._consumer is None:
            raise RuntimeError("consumer is not started")
        return self._consumer

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now (empty while it is not started)."""
        if self._consumer is None:
            return frozenset()
        return frozenset(TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment())

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the position of an assigned partition (until the next rebalance resets it to the commit)."""
        consumer = self._require()
        ktp = KafkaTopicPartition(tp.topic, tp.partition)
        if ktp not in consumer.assignment():
            raise KeyError(f"{tp} is not assigned to this consumer")
        consumer.seek(ktp, offset)

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        """Records after the current position of each assigned partition; waits up to timeout_ms."""
        fetched = await self._require().getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {
            TopicPartition(ktp.topic, ktp.partition): [_record(r) for r in records]
            for ktp, records in fetched.items()
            if records
        }

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to consume.

        Offsets of partitions this member no longer owns (a rebalance took them) are dropped, as is a
        commit the group refuses because it rebalanced meanwhile: the partitions' new owners resume
        from the group's last commit, so those records are delivered again (at-least-once).
        """
        consumer = self._require()
        owned = consumer.assignment()
        mine: dict[Any, int] = {}
        for tp, offset in offsets.items():
            ktp = KafkaTopicPartition(tp.topic, tp.partition)
            if ktp in owned:
                mine[ktp] = offset
        if len(mine) < len(offsets):
            log.warning(
                "group %s: not committing %d partition(s) this member no longer owns; they will be redelivered",
                self.group,
                len(offsets) - len(mine),
            )
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("group %s: commit dropped by a rebalance, records will be redelivered: %s", self.group, exc)
