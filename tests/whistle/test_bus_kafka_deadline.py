"""The Kafka bus's delivery deadline against a broker of the test's own that stops answering (SIGSTOP: its
connections stay open, nothing comes back). aiokafka's idempotent producer retries such a batch forever; the
bus must give up at its deadline, retire the producer, and send again on a new one once the broker answers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_broker import KafkaBroker, KafkaUnavailable, start_kafka, stop_kafka
from whistle.bus import TopicPartition
from whistle.bus_kafka import DeliveryTimeout, KafkaBus

TOPIC = "deadline"


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    try:
        held = start_kafka(Path(tmp_path_factory.mktemp("kafka-deadline")), partitions=2)
    except KafkaUnavailable as exc:
        pytest.fail(f"Kafka test broker: {exc}", pytrace=False)
    yield held
    os.kill(held.process.pid, signal.SIGCONT)  # never leave it stopped, whatever failed
    stop_kafka(held)


def records(tag: str, n: int = 20) -> list[tuple[bytes, bytes]]:
    return [(f"dev-{i % 5}".encode(), f"{tag}:{i}".encode()) for i in range(n)]


async def send_until_acknowledged(bus: KafkaBus, items: list[tuple[bytes, bytes]], within_s: float) -> list[str]:
    """Send as the collector does (collectors.service: again after any failure); returns the failures met."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    failures: list[str] = []
    while True:
        try:
            await bus.send_many(TOPIC, items)
            return failures
        except Exception as exc:
            failures.append(repr(exc))
            if loop.time() > end:
                raise AssertionError(f"not delivered within {within_s:.0f} s: {failures}") from exc
            await asyncio.sleep(0.5)


async def test_a_send_the_broker_never_acknowledges_fails_at_the_deadline_then_a_new_producer_delivers(
    broker: KafkaBroker,
) -> None:
    bus = KafkaBus(broker.bootstrap, 2, client_id="deadline", request_timeout_ms=2_000, delivery_timeout_ms=6_000)
    await bus.start()
    try:
        await bus.send_many(TOPIC, records("before"))
        loop = asyncio.get_running_loop()
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            began = loop.time()
            with pytest.raises(DeliveryTimeout, match="did not acknowledge"):
                async with asyncio.timeout(40):  # bounds the test: without a deadline the send never returns
                    await bus.send_many(TOPIC, records("unanswered"))
            assert loop.time() - began < 20, "the deadline is 6 s"
            assert bus.producers_replaced == 1
            with pytest.raises((DeliveryTimeout, ConnectionError)):  # still silent: no new producer gets through
                async with asyncio.timeout(40):
                    await bus.send_many(TOPIC, records("unanswered"))
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        await send_until_acknowledged(bus, records("after"), 60)
        await bus.send_many(TOPIC, records("later"))  # the new producer keeps working

        reader = bus.consumer("deadline-reader", [TOPIC])
        await reader.start()
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while not {b"after:19", b"later:19"} <= set(got):
                for recs in (await reader.getmany(timeout_ms=500, max_records=1000)).values():
                    got.extend(r.value for r in recs)
        await reader.stop()
        for tag in (b"before", b"after", b"later"):  # acknowledged: on the log, each key's records in order
            values = [v for v in got if v.startswith(tag + b":")]
            assert sorted(set(values), key=lambda v: int(v.split(b":")[1])) == [
                f"{tag.decode()}:{i}".encode() for i in range(20)
            ]
        ends = await bus.end_offsets_async(TOPIC)
        assert sum(ends) >= 60
        assert await bus.bounds(TopicPartition(TOPIC, 0)) == (0, ends[0])
    finally:
        await bus.stop()


async def test_stopping_the_bus_does_not_wait_forever_for_a_broker_that_never_answers(broker: KafkaBroker) -> None:
    bus = KafkaBus(broker.bootstrap, 2, client_id="stopping", request_timeout_ms=2_000, delivery_timeout_ms=600_000)
    await bus.start()
    await bus.send_many(TOPIC, records("before"))
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        stuck = asyncio.create_task(bus.send_many(TOPIC, records("unanswered")))
        await asyncio.sleep(1.0)
        assert not stuck.done()
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(30):  # bounds the test: aiokafka's stop() alone waits for the batch forever
            await bus.stop()
        assert loop.time() - began < 15, "the producer's last batches are waited for at most the request timeout"
        assert not bus.running
        stuck.cancel()
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
