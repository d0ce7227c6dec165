"""The Kafka bus against a real broker: placement, group delivery, commits, rebalances, seek, lifecycle."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka import AIOKafkaProducer

from whistle.bus import Bus, MemoryBus, Record, TopicPartition, create_bus, partition_for
from whistle.bus_kafka import KafkaBus, KafkaConsumer

# The session broker fixture `kafka` comes from tests/kafka_fixtures.py, registered in tests/conftest.py.

PARTITIONS = 4


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def bus(kafka: str) -> AsyncIterator[KafkaBus]:
    async with KafkaBus(kafka, PARTITIONS, client_id=unique("test")) as b:
        yield b


def items(n: int, devices: int = 97) -> list[tuple[bytes, bytes]]:
    """n records over `devices` keys; each value names its key and its sequence number within that key."""
    seq: dict[int, int] = {}
    out = []
    for i in range(n):
        d = i % devices
        seq[d] = seq.get(d, -1) + 1
        out.append((f"RJ-H{d:06d}".encode(), f"RJ-H{d:06d}:{seq[d]}".encode()))
    return out


async def drain(
    consumers: Sequence[KafkaConsumer], expected: int, timeout: float = 30.0
) -> dict[TopicPartition, list[Record]]:
    """Poll the consumers together until they returned `expected` records (or fail at the deadline)."""
    got: dict[TopicPartition, list[Record]] = {}
    total = 0
    deadline = asyncio.get_running_loop().time() + timeout
    while total < expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"got {total} of {expected} records within {timeout} s")
        batches = await asyncio.gather(*(c.getmany(timeout_ms=200, max_records=2000) for c in consumers))
        for batch in batches:
            for tp, records in batch.items():
                got.setdefault(tp, []).extend(records)
                total += len(records)
    return got


async def nothing_more(consumers: Sequence[KafkaConsumer]) -> None:
    extra = await asyncio.gather(*(c.getmany(timeout_ms=300, max_records=100) for c in consumers))
    assert all(not batch for batch in extra), extra


async def wait_assignments(consumers: Sequence[KafkaConsumer], topic: str, timeout: float = 20.0) -> None:
    """Until every member owns some partitions, none twice, all of the topic's together."""
    deadline = asyncio.get_running_loop().time() + timeout
    everything = {TopicPartition(topic, p) for p in range(PARTITIONS)}
    while True:
        owned = [c.assignment() for c in consumers]
        union = set().union(*owned)
        if all(owned) and sum(map(len, owned)) == len(union) and union == everything:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"group did not settle within {timeout} s: {owned}")
        await asyncio.sleep(0.05)  # aiokafka rebalances in the background, on heartbeats


async def test_keys_land_on_the_partition_partition_for_names(bus: KafkaBus, kafka: str) -> None:
    topic = unique("place")
    batch = items(400, devices=400)
    await bus.send_many(topic, batch)
    async with bus.consumer(unique("g"), [topic]) as c:
        got = await drain([c], len(batch))
    for tp, records in got.items():
        for r in records:
            assert r.partition == tp.partition == partition_for(r.key, PARTITIONS)
    assert len({tp.partition for tp in got}) == PARTITIONS
    # aiokafka's own default partitioner (the Java client's murmur2) agrees, record by record
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        for key, value in batch[:50]:
            meta = await producer.send_and_wait(topic, value, key=key)
            assert meta.partition == partition_for(key, PARTITIONS)
    finally:
        await producer.stop()


async def test_a_group_reads_everything_once_in_partition_order(bus: KafkaBus) -> None:
    topic = unique("order")
    sent = items(6000)
    await bus.send_many(topic, sent[:2500])
    await bus.send_many(topic, sent[2500:])
    assert sum(await bus.end_offsets_async(topic)) == len(sent)
    async with bus.consumer(unique("g"), [topic]) as c:
        got = await drain([c], len(sent))
        await nothing_more([c])
    values = [r.value for records in got.values() for r in records]
    assert sorted(values) == sorted(v for _, v in sent)
    for records in got.values():
        assert [r.offset for r in records] == list(range(len(records)))
    # within a key (so within its partition) the order of sending is kept
    last: dict[bytes, int] = {}
    for records in got.values():
        for r in records:
            n = int(r.value.rsplit(b":", 1)[1])
            assert n == last.get(r.key, -1) + 1
            last[r.key] = n


async def test_two_members_split_the_partitions_and_read_each_record_once(bus: KafkaBus) -> None:
    topic, group = unique("split"), unique("g")
    async with bus.consumer(group, [topic]) as a, bus.consumer(group, [topic]) as b:
        await wait_assignments([a, b], topic)
        sent = items(3000)
        await bus.send_many(topic, sent)
        got = await drain([a, b], len(sent))
        await nothing_more([a, b])
        assert sorted(r.value for rs in got.values() for r in rs) == sorted(v for _, v in sent)
        for tp, records in got.items():
            owner = a if tp in a.assignment() else b
            assert tp in owner.assignment()
            assert [r.offset for r in records] == list(range(len(records)))


async def test_a_new_member_resumes_after_the_commit_and_gets_the_rest_again(bus: KafkaBus) -> None:
    topic, group = unique("resume"), unique("g")
    sent = items(800)
    await bus.send_many(topic, sent)
    async with bus.consumer(group, [topic]) as first:
        got = await drain([first], len(sent))
        # commit half of each partition
        committed = {tp: len(records) // 2 for tp, records in got.items()}
        await first.commit(committed)
    for tp, offset in committed.items():
        assert await bus.committed_async(group, tp) == offset
    async with bus.consumer(group, [topic]) as second:
        expected = sum(len(records) - committed[tp] for tp, records in got.items())
        again = await drain([second], expected)
        await nothing_more([second])
    for tp, records in again.items():
        assert [r.offset for r in records] == list(range(committed[tp], len(got[tp])))
        assert [r.value for r in records] == [r.value for r in got[tp][committed[tp] :]]
    # a group that never committed starts at the earliest record
    async with bus.consumer(unique("g"), [topic]) as fresh:
        assert sum(len(rs) for rs in (await drain([fresh], len(sent))).values()) == len(sent)


async def test_a_commit_of_partitions_lost_in_a_rebalance_is_dropped_and_they_come_again(bus: KafkaBus) -> None:
    topic, group = unique("lost"), unique("g")
    sent = items(400)
    await bus.send_many(topic, sent)
    async with bus.consumer(group, [topic]) as a:
        got = await drain([a], len(sent))
        async with bus.consumer(group, [topic]) as b:
            await wait_assignments([a, b], topic)
            # a commits everything it read, including partitions that are b's now: those are not committed
            await a.commit({tp: records[-1].offset + 1 for tp, records in got.items()})
            for tp in b.assignment():
                assert await bus.committed_async(group, tp) is None
            for tp in a.assignment():
                assert await bus.committed_async(group, tp) == len(got[tp])
            expected = sum(len(got[tp]) for tp in b.assignment())
            again = await drain([b], expected)
            assert set(again) == b.assignment()


async def test_seek_moves_the_position_and_leaves_the_commit(bus: KafkaBus) -> None:
    topic, group = unique("seek"), unique("g")
    await bus.send_many(topic, [(b"one-key", str(i).encode()) for i in range(20)])
    tp = TopicPartition(topic, partition_for(b"one-key", PARTITIONS))
    async with bus.consumer(group, [topic]) as c:
        assert len((await drain([c], 20))[tp]) == 20
        c.seek(tp, 15)
        again = await drain([c], 5)
        assert [r.offset for r in again[tp]] == [15, 16, 17, 18, 19]
        assert [r.value for r in again[tp]] == [b"15", b"16", b"17", b"18", b"19"]
        other = TopicPartition(topic + "-elsewhere", 0)
        with pytest.raises(KeyError):
            c.seek(other, 0)
    assert await bus.committed_async(group, tp) is None


async def test_stop_is_idempotent_and_a_stopped_bus_refuses_work(kafka: str) -> None:
    bus = KafkaBus(kafka, PARTITIONS)
    await bus.start()
    await bus.start()  # a no-op
    topic = unique("stop")
    c = bus.consumer(unique("g"), [topic])
    await c.start()
    assert c.assignment()
    await c.stop()
    await c.stop()
    assert c.assignment() == frozenset()
    with pytest.raises(RuntimeError):
        await c.getmany(timeout_ms=0, max_records=1)
    await bus.stop()
    await bus.stop()
    with pytest.raises(RuntimeError):
        await bus.send_many(topic, [(b"k", b"v")])


async def test_ensure_topics_is_safe_for_existing_topics(bus: KafkaBus, kafka: str) -> None:
    topic = unique("exists")
    await bus.ensure_topics([topic, topic])
    async with KafkaBus(kafka, PARTITIONS) as other:
        await other.ensure_topics([topic])  # already there: fine
        assert await other.end_offsets_async(topic) == [0] * PARTITIONS


async def test_create_bus_picks_kafka_when_a_bootstrap_is_set(kafka: str) -> None:
    chosen: Bus = create_bus(kafka, 3)
    assert isinstance(chosen, KafkaBus)
    assert chosen.bootstrap == kafka and chosen.partitions == 3
    assert isinstance(create_bus(None, 3), MemoryBus)
    assert isinstance(create_bus("", 3), MemoryBus)


async def test_an_unreachable_cluster_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9"):
        await KafkaBus("127.0.0.1:9", 2).start()
