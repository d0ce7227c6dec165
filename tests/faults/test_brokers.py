"""Faults with the brokers of the city-scale deployment: `whistle serve` behind a Mosquitto (`WHISTLE_MQTT_URL`) and
over a Kafka broker (`WHISTLE_KAFKA_BOOTSTRAP`), each started for the test on loopback: Mosquitto restarted
mid-stream, the service killed mid-backfill, the Kafka broker restarted mid-stream. The same input and the same
comparison as on the embedded default (tests/faults/test_embedded.py), against the same uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.mosquitto import MOSQUITTO_CANDIDATES, find_binary
from evaluation.frontdoor.processes import HOST, free_port, listening, log_tail, mqtt_subscriptions
from tests.faults.conftest import publish_all, settled_as_reference, wait
from tests.faults.devices import DeviceStream
from tests.faults.service import PARTITIONS, Deployment, Outcome
from tests.faults.test_embedded import fire_after_recovery
from tests.faults.workload import Workload
from tests.kafka_broker import KafkaBroker, KafkaUnavailable, restart_kafka, start_kafka, stop_kafka

pytestmark = pytest.mark.timeout(600)  # 1-2 minutes each on two shared cores; bounded anyway


class PersistentMosquitto:
    """Mosquitto as deploy/mosquitto.conf runs it where it matters here: persistence on (a restart keeps the
    collectors' sessions and what is queued for them), no queue limit; anonymous on a loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = find_binary("mosquitto", MOSQUITTO_CANDIDATES)
        self.log = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""  # root: Mosquitto would write as `mosquitto`, and fail
        conf.write_text(
            f"{user}listener {self.port} {HOST}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            "max_queued_messages 1000000000\nmax_queued_bytes 0\nmax_inflight_messages 1000\n"
            # every PUBLISH and PUBACK: which side lost a message is in this log when a test fails
            "log_dest stderr\nlog_type all\n"
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        while not listening(HOST, self.port):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"mosquitto did not listen on {self.port}: {log_tail(self.log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it writes its persistence file on the way out
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def mosquitto_persistent(workdir: Path) -> Iterator[PersistentMosquitto]:
    broker = PersistentMosquitto(workdir / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_broker(workdir: Path) -> Iterator[list[KafkaBroker]]:
    """A Kafka broker of this test's own (the bus's topic names are fixed); a list, so a restart replaces it."""
    try:
        held = [start_kafka(workdir / "kafka", partitions=int(PARTITIONS))]
    except KafkaUnavailable as exc:
        pytest.fail(f"Kafka test broker: {exc}", pytrace=False)
    yield held
    stop_kafka(held[-1])
    if not os.environ.get("WHISTLE_FAULTS_KEEP"):  # kept with the rest of the test's state (conftest.workdir)
        shutil.rmtree(workdir / "kafka", ignore_errors=True)


def subscribed(dep: Deployment) -> None:
    """Until the collector's subscriptions exist: a QoS 1 message published before is not kept for it."""
    wait(lambda: mqtt_subscriptions(dep.log.read_text(errors="replace")) >= 2, 60, "collector subscription", dep)


def backfill_under_way(dep: Deployment, work: Workload, share: float) -> DeviceStream:
    """Start the deployment, post the registry, publish the backfill; returns once `share` of it is acknowledged."""
    dep.start()
    subscribed(dep)
    dep.post_registry(work)
    stream = publish_all(dep, work, "backfill")
    stream.wait_acked(work.first(share), 120)
    return stream


def test_mosquitto_restarted_mid_stream(
    deployments: Callable[..., Deployment],
    mosquitto_persistent: PersistentMosquitto,
    work: Workload,
    reference: Outcome,
) -> None:
    dep = deployments(mqtt_url=mosquitto_persistent.url)
    stream = backfill_under_way(dep, work, 0.4)
    mosquitto_persistent.stop()
    time.sleep(2)
    mosquitto_persistent.start()
    settled_as_reference(dep, stream, work, reference)
    assert stream.connections >= 2
    fire_after_recovery(dep, "Mosquitto restarted")


def test_sigkill_of_whistle_serve_mid_backfill_on_mosquitto_and_kafka(
    deployments: Callable[..., Deployment],
    mosquitto_persistent: PersistentMosquitto,
    kafka_broker: list[KafkaBroker],
    work: Workload,
    reference: Outcome,
) -> None:
    dep = deployments(mqtt_url=mosquitto_persistent.url, kafka=kafka_broker[0].bootstrap)
    stream = backfill_under_way(dep, work, 0.5)
    dep.kill()  # the devices go on publishing to Mosquitto, which keeps it for the collector's session
    dep.start()
    settled_as_reference(dep, stream, work, reference)
    fire_after_recovery(dep, "SIGKILL of whistle serve (Mosquitto + Kafka)")


def test_kafka_broker_restarted_mid_stream(
    deployments: Callable[..., Deployment],
    mosquitto_persistent: PersistentMosquitto,
    kafka_broker: list[KafkaBroker],
    work: Workload,
    reference: Outcome,
) -> None:
    dep = deployments(mqtt_url=mosquitto_persistent.url, kafka=kafka_broker[0].bootstrap)
    stream = backfill_under_way(dep, work, 0.4)
    try:
        kafka_broker.append(restart_kafka(kafka_broker[0], down_s=10.0))
    except KafkaUnavailable as exc:
        pytest.fail(f"Kafka test broker: {exc}", pytrace=False)
    settled_as_reference(dep, stream, work, reference)
    fire_after_recovery(dep, "Kafka broker restarted")
