"""The message bus: Kafka's semantics behind one interface.

Topics have a fixed number of partitions; a record's key picks its partition (murmur2, as
Kafka's default partitioner does, so both backends place a key on the same partition);
consumers join a group, the group's partitions are spread over its members, and each
member commits the offset of the next record it wants. A restarted member resumes from the
committed offset, so whatever it had not committed is delivered again (at-least-once).

Backends: `MemoryBus` keeps all of this in one process (its logs and committed offsets live as long
as the process does; it suits tests and a single process that may forget what it had not judged);
`whistle.bus_pg.PgLogBus` keeps the log in PostgreSQL, durable and shared by the processes of one
machine, and can append inside the writer's own transaction (the embedded default);
`whistle.bus_kafka.KafkaBus` is Kafka, for scale-out.

Identity. An offset means something only in the log it was taken from: a restarted `MemoryBus` is a
new, empty log, a Kafka topic can be recreated, retention trims the start of any log. `bounds(tp)`
gives a partition's first and next offsets and `fingerprint(tp, offset)` a digest of the record at an
offset (its key, value and append time), so a consumer that kept an offset (the rule engine's
snapshots) can tell whether the log is still the one it indexed.

Control records. `broadcast(topic, value)` appends one record to every partition of a topic (the
collectors' watermarks, registry changes): consumers tell them from data by their first byte
(`whistle.serde`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle.timeutil import now_ms

# Topic names. Life-safety events get their own topic so bulk meter data never queues ahead of them.
TOPIC_PRIORITY = "whistle.priority"
TOPIC_READINGS = "whistle.readings"
TOPIC_DETECTIONS = "whistle.detections"


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: int


class Consumer(Protocol):
    """One member of a consumer group."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assignment(self) -> frozenset[TopicPartition]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the position of an assigned partition; KeyError if it is not assigned."""
        ...

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        """Records after the current position of each assigned partition; waits up to timeout_ms."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the next record to consume."""
        ...


class Bus(Protocol):
    """A producer and a factory of consumers on one cluster."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_many(self, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Append (key, value) records; returns when the bus holds them durably (for its kind)."""
        ...

    async def broadcast(self, topic: str, value: bytes) -> None:
        """Append one record with an empty key to every partition of `topic`."""
        ...

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """(the first offset still held, the offset the next record will get)."""
        ...

    async def fingerprint(self, tp: TopicPartition, offset: int) -> str | None:
        """`mark` of the record at `offset` (None if the log does not hold it)."""
        ...

    def mark(self, record: Record) -> str:
        """A digest of a record read from this bus: the same record in the same log gives the same mark."""
        ...

    async def partitions_of(self, topic: str) -> int:
        """How many partitions `topic` has (a key's partition is `partition_for(key, partitions_of(topic))`)."""
        ...

    async def end_offsets_async(self, topic: str) -> list[int]:
        """The offset the next record of each partition will get."""
        ...

    async def committed_async(self, group: str, tp: TopicPartition) -> int | None:
        """The group's committed offset of a partition, None if it has none."""
        ...

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...


@runtime_checkable
class TransactionalBus(Bus, Protocol):
    """A bus whose log is in the writer's database: records appended inside the writer's transaction are on
    the bus exactly when (and only if) that transaction commits (`whistle.bus_pg.PgLogBus`)."""

    async def append(self, conn: AsyncConnection[TupleRow], topic: str, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Append inside `conn`'s open transaction; returns how many records."""
        ...

    async def append_broadcast(self, conn: AsyncConnection[TupleRow], topic: str, value: bytes) -> int:
        """One record with an empty key on every partition, inside `conn`'s open transaction."""
        ...


def record_digest(topic: str, partition: int, offset: int, timestamp: int, key: bytes, value: bytes) -> str:
    """The fingerprint of one record: the same record in the same log gives the same digest."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{topic}|{partition}|{offset}|{timestamp}|".encode())
    h.update(len(key).to_bytes(4, "big"))
    h.update(key)
    h.update(value)
    return h.hexdigest()


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's `Utils.murmur2`), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra == 3:
        h ^= (data[(length & ~3) + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[(length & ~3) + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[length & ~3] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class _Group:
    def __init__(self) -> None:
        self.members: list[MemoryConsumer] = []
        self.committed: dict[TopicPartition, int] = {}


class _Log:
    """One partition's records from `start` on (earlier ones were trimmed)."""

    __slots__ = ("records", "start")

    def __init__(self) -> None:
        self.start = 0
        self.records: list[Record] = []

    @property
    def end(self) -> int:
        return self.start + len(self.records)

    def read(self, pos: int, n: int) -> list[Record]:
        i = max(0, pos - self.start)
        return self.records[i : i + n]

    def trim(self, below: int) -> int:
        """Forget records below offset `below`; returns how many went."""
        k = min(max(0, below - self.start), len(self.records))
        if k:
            del self.records[:k]
            self.start += k
        return k


class MemoryBus:
    """The in-process bus: partitioned append-only logs, consumer groups, committed offsets.

    Records every group subscribed to a topic has committed are trimmed (in steps of `trim_every`), so
    memory stays bounded by the consumers' lag, not by everything ever sent. A group that subscribes
    later starts at the first record still held.
    """

    def __init__(self, partitions: int = 8, *, trim_every: int = 1024) -> None:
        self._partitions = partitions
        self._logs: dict[str, list[_Log]] = {}
        self._groups: dict[str, _Group] = {}
        self._subscribers: dict[str, set[str]] = {}  # topic -> groups that ever subscribed to it
        self._appended = asyncio.Event()
        self._running = False
        self._epoch = uuid.uuid4().hex  # a new bus is a new log: its offsets mean nothing in another
        self.trim_every = trim_every
        self.trimmed = 0

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        self._running = False
        self._wake()

    async def __aenter__(self) -> MemoryBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _logs_of(self, topic: str) -> list[_Log]:
        logs = self._logs.get(topic)
        if logs is None:
            logs = self._logs[topic] = [_Log() for _ in range(self._partitions)]
        return logs

    def partitions(self, topic: str) -> list[list[Record]]:
        """The records each partition of the topic still holds (created on first use)."""
        return [log.records for log in self._logs_of(topic)]

    async def send_many(self, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        if not self._running:
            raise RuntimeError("bus is not running")
        logs = self._logs_of(topic)
        ts = now_ms()
        count = len(logs)
        for key, value in items:
            p = partition_for(key, count)
            log = logs[p]
            log.records.append(Record(topic, p, log.end, key, value, ts))
        self._wake()

    async def broadcast(self, topic: str, value: bytes) -> None:
        if not self._running:
            raise RuntimeError("bus is not running")
        ts = now_ms()
        for p, log in enumerate(self._logs_of(topic)):
            log.records.append(Record(topic, p, log.end, b"", value, ts))
        self._wake()

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        log = self._logs_of(tp.topic)[tp.partition]
        return log.start, log.end

    async def fingerprint(self, tp: TopicPartition, offset: int) -> str | None:
        log = self._logs_of(tp.topic)[tp.partition]
        got = log.read(offset, 1) if log.start <= offset < log.end else []
        return self.mark(got[0]) if got else None

    def mark(self, record: Record) -> str:
        r = record
        return record_digest(f"{self._epoch}/{r.topic}", r.partition, r.offset, r.timestamp, r.key, r.value)

    async def partitions_of(self, topic: str) -> int:
        return self._partitions

    def consumer(self, group: str, topics: Sequence[str]) -> MemoryConsumer:
        return MemoryConsumer(self, group, tuple(topics))

    def end_offsets(self, topic: str) -> list[int]:
        """The offset the next record of each partition will get."""
        return [log.end for log in self._logs_of(topic)]

    def committed(self, group: str, tp: TopicPartition) -> int | None:
        g = self._groups.get(group)
        return None if g is None else g.committed.get(tp)

    async def end_offsets_async(self, topic: str) -> list[int]:
        return self.end_offsets(topic)

    async def committed_async(self, group: str, tp: TopicPartition) -> int | None:
        return self.committed(group, tp)

    # group membership -------------------------------------------------------------------

    def _join(self, member: MemoryConsumer) -> None:
        g = self._groups.setdefault(member.group, _Group())
        g.members.append(member)
        for topic in member.topics:
            self._subscribers.setdefault(topic, set()).add(member.group)
        self._rebalance(g)

    def _leave(self, member: MemoryConsumer) -> None:
        g = self._groups.get(member.group)
        if g is not None and member in g.members:
            g.members.remove(member)
            self._rebalance(g)

    def _rebalance(self, g: _Group) -> None:
        """Round robin of each subscribed topic's partitions over the members subscribed to it."""
        for m in g.members:
            m._revoke()
        topics = sorted({t for m in g.members for t in m.topics})
        for topic in topics:
            members = [m for m in g.members if topic in m.topics]
            logs = self._logs_of(topic)
            for p, member in zip(range(self._partitions), itertools.cycle(members), strict=False):
                tp = TopicPartition(topic, p)
                member._assign(tp, max(g.committed.get(tp, 0), logs[p].start))

    def _commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        g = self._groups.setdefault(group, _Group())
        g.committed.update(offsets)
        for topic in {tp.topic for tp in offsets}:
            self._trim(topic)

    def _trim(self, topic: str) -> None:
        """Drop what every group subscribed to `topic` has committed (once there is enough to drop)."""
        groups = [self._groups.get(name) for name in self._subscribers.get(topic, ())]
        if not groups:
            return
        for p, log in enumerate(self._logs_of(topic)):
            tp = TopicPartition(topic, p)
            below = min((g.committed.get(tp, 0) if g is not None else 0) for g in groups)
            if below - log.start >= self.trim_every:
                self.trimmed += log.trim(below)

    def _wake(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def _wait(self, timeout: float) -> None:
        event = self._appended
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class MemoryConsumer:
    """A member of a consumer group on a `MemoryBus`."""

    def __init__(self, bus: MemoryBus, group: str, topics: tuple[str, ...]) -> None:
        self._bus = bus
        self.group = group
        self.topics = topics
        self._positions: dict[TopicPartition, int] = {}
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            self._bus._join(self)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            self._bus._leave(self)

    async def __aenter__(self) -> MemoryConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def _assign(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def _revoke(self) -> None:
        self._positions.clear()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the position of an assigned partition."""
        if tp not in self._positions:
            raise KeyError(f"{tp} is not assigned to this consumer")
        self._positions[tp] = offset

    def _collect(self, max_records: int) -> dict[TopicPartition, list[Record]]:
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records
        # Topics in subscription order: a consumer that lists the priority topic first drains it first.
        for topic in self.topics:
            logs = self._bus._logs_of(topic)
            for tp, pos in sorted(self._positions.items()):
                if tp.topic != topic or budget <= 0:
                    continue
                log = logs[tp.partition]
                at = max(pos, log.start)  # what was trimmed is gone: go on from the first record held
                if at < log.end:
                    chunk = log.read(at, budget)
                    out[tp] = chunk
                    self._positions[tp] = at + len(chunk)
                    budget -= len(chunk)
        return out

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if not self._started:
            raise RuntimeError("consumer is not started")
        out = self._collect(max_records)
        if out or timeout_ms <= 0:
            return out
        await self._bus._wait(timeout_ms / 1000)
        return self._collect(max_records) if self._started else {}

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._bus._commit(self.group, offsets)


def create_bus(kafka_bootstrap: str | None, partitions: int) -> Bus:
    """Kafka when a bootstrap is given, else the in-process bus (see `open_bus` for the durable log)."""
    return open_bus("kafka" if kafka_bootstrap else "memory", partitions, kafka_bootstrap=kafka_bootstrap)


def open_bus(kind: str, partitions: int, *, kafka_bootstrap: str | None = None, db: Any = None, **options: Any) -> Bus:
    """The bus the configuration asks for: "kafka", "postgres" (the durable log in `db`) or "memory"."""
    if kind == "kafka":
        if not kafka_bootstrap:
            raise ValueError("the Kafka bus needs WHISTLE_KAFKA_BOOTSTRAP")
        from whistle.bus_kafka import KafkaBus

        return KafkaBus(kafka_bootstrap, partitions)
    if kind == "postgres":
        if db is None:
            raise ValueError("the durable log needs the database")
        from whistle.bus_pg import PgLogBus

        return PgLogBus(db, partitions, **options)
    if kind == "memory":
        return MemoryBus(partitions)
    raise ValueError(f"unknown bus {kind!r}: choose postgres, memory or kafka")
