"""The message bus: Kafka's semantics behind one interface.

Topics have a fixed number of partitions; a record's key picks its partition (murmur2, as
Kafka's default partitioner does, so both backends place a key on the same partition);
consumers join a group, the group's partitions are spread over its members, and each
member commits the offset of the next record it wants. A restarted member resumes from the
committed offset, so whatever it had not committed is delivered again (at-least-once).

`MemoryBus` keeps all of this in one process: it is the embedded default. Its logs and
committed offsets live as long as the process does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

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

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...


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


class MemoryBus:
    """The in-process bus: partitioned append-only logs, consumer groups, committed offsets."""

    def __init__(self, partitions: int = 8) -> None:
        self._partitions = partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, _Group] = {}
        self._appended = asyncio.Event()
        self._running = False

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

    def partitions(self, topic: str) -> list[list[Record]]:
        """The topic's partition logs, created on first use."""
        logs = self._logs.get(topic)
        if logs is None:
            logs = self._logs[topic] = [[] for _ in range(self._partitions)]
        return logs

    async def send_many(self, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        if not self._running:
            raise RuntimeError("bus is not running")
        logs = self.partitions(topic)
        ts = now_ms()
        count = len(logs)
        for key, value in items:
            p = partition_for(key, count)
            log = logs[p]
            log.append(Record(topic, p, len(log), key, value, ts))
        self._wake()

    def consumer(self, group: str, topics: Sequence[str]) -> MemoryConsumer:
        return MemoryConsumer(self, group, tuple(topics))

    def end_offsets(self, topic: str) -> list[int]:
        """The offset the next record of each partition will get."""
        return [len(log) for log in self.partitions(topic)]

    def committed(self, group: str, tp: TopicPartition) -> int | None:
        g = self._groups.get(group)
        return None if g is None else g.committed.get(tp)

    # group membership -------------------------------------------------------------------

    def _join(self, member: MemoryConsumer) -> None:
        g = self._groups.setdefault(member.group, _Group())
        g.members.append(member)
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
            for p, member in zip(range(self._partitions), itertools.cycle(members), strict=False):
                tp = TopicPartition(topic, p)
                member._assign(tp, g.committed.get(tp, 0))

    def _commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        g = self._groups.setdefault(group, _Group())
        g.committed.update(offsets)

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
            logs = self._bus.partitions(topic)
            for tp, pos in sorted(self._positions.items()):
                if tp.topic != topic or budget <= 0:
                    continue
                log = logs[tp.partition]
                if pos < len(log):
                    chunk = log[pos : pos + budget]
                    out[tp] = chunk
                    self._positions[tp] = pos + len(chunk)
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
    """The bus the configuration asks for."""
    if kafka_bootstrap:
        from whistle.bus_kafka import KafkaBus

        return KafkaBus(kafka_bootstrap, partitions)
    return MemoryBus(partitions)
