"""The session's real Kafka broker, as a pytest fixture (register with `pytest_plugins`).

`kafka` yields the bootstrap string of a single-node KRaft broker on a loopback port. It fetches
the broker first if needed (scripts/ensure-kafka) and fails, naming the missing piece, if it cannot
start one; it never skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka_broker import KafkaUnavailable, start_kafka, stop_kafka


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Kafka broker for the session; yields "127.0.0.1:PORT"."""
    try:
        broker = start_kafka(tmp_path_factory.mktemp("kafka"))
    except KafkaUnavailable as exc:
        pytest.fail(f"Kafka test broker: {exc}", pytrace=False)
    yield broker.bootstrap
    stop_kafka(broker)
