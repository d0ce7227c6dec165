"""The evaluation's own QoS 1 publisher, against a real (private) Mosquitto."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from evaluation.frontdoor.errors import EvaluationError
from evaluation.frontdoor.processes import Mosquitto, free_port
from evaluation.frontdoor.publish import Publisher, publish_all, read_messages


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mqtt")
    m.start()
    yield m
    m.stop()


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{port}")
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber did not subscribe"

    def wait_for(self, n: int, timeout_s: float = 30.0) -> None:
        end = time.monotonic() + timeout_s
        while len(self.received) < n and time.monotonic() < end:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_every_message_is_acknowledged_and_arrives_in_order_through_a_small_window(broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "whistle/v1/#")
    try:
        messages = [
            (f"whistle/v1/water/WM-{i % 7}/data", f'{{"ts":{i},"total_m3":1.0}}'.encode(), 1) for i in range(500)
        ]
        published = publish_all(broker.url, messages, window=4)
        assert (published.messages, published.readings) == (500, 500)
        sub.wait_for(500)
        assert sub.received == [(t, p) for t, p, _ in messages]
    finally:
        sub.close()


def test_a_messages_file_is_published_byte_for_byte_with_its_readings_counted(
    tmp_path: Path, broker: Mosquitto
) -> None:
    lines = [
        '{"send_at":1,"topic":"whistle/v1/water/W1/data","payload":{"batch":[{"ts":1,"seq":1,"total_m3":1.2300},'
        '{"ts":2,"seq":2,"total_m3":1.2400}]}}',
        '{"topic":"whistle/v1/power/P1/data","payload":{"ts":3,"total_kwh":7.010},"send_at":2}',
    ]
    path = tmp_path / "messages.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read = list(read_messages(path))
    assert read[0] == (
        "whistle/v1/water/W1/data",
        b'{"batch":[{"ts":1,"seq":1,"total_m3":1.2300},{"ts":2,"seq":2,"total_m3":1.2400}]}',
        2,
    )
    assert read[1][0] == "whistle/v1/power/P1/data" and read[1][2] == 1  # another key order: decoded, re-encoded
    sub = Subscriber(broker.port, "whistle/v1/#")
    try:
        assert publish_all(broker.url, read).readings == 3
        sub.wait_for(2)
        assert sub.received[0][1] == read[0][1]
    finally:
        sub.close()


def test_a_broker_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(EvaluationError, match="cannot reach the MQTT broker"):
        Publisher(f"mqtt://127.0.0.1:{free_port()}").connect(timeout_s=5)
