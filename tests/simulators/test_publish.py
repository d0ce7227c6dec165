"""Publishing against a real Mosquitto: backfill, live pacing, load mode, and `whistle simulate` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.district import build_district
from simulators.live import LiveClock, SmokeDrill, connect_all, live_start, publish
from simulators.load import prepare, run_load
from simulators.stream import Simulation, TrafficOptions
from simulators.timebase import parse_start
from simulators.wire import WireClient, WireError
from tests.conftest import MosquittoBroker
from whistle.mqtt import MqttEndpoint
from whistle.timeutil import DAY_MS, HOUR_MS, now_ms

WHISTLE = str(Path(sys.executable).with_name("whistle"))


class Subscriber:
    """A paho subscriber on whistle/v1/# (QoS 1) that keeps what it receives."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.got: list[tuple[str, bytes, int]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: (c.subscribe("whistle/v1/#", qos=1), None)[1]
        self.client.on_subscribe = lambda c, u, mid, rc, p=None: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10), "subscriber not ready"

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, msg.payload, now_ms()))

    def wait(self, n: int, timeout: float = 30.0) -> list[tuple[str, bytes, int]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    break
            time.sleep(0.05)
        time.sleep(0.3)  # anything extra would show now
        with self.lock:
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mosquitto: MosquittoBroker):  # type: ignore[no-untyped-def]
    s = Subscriber(mosquitto)
    yield s
    s.close()


def test_a_backfill_arrives_complete_and_in_order_per_device(
    mosquitto: MosquittoBroker, subscriber: Subscriber
) -> None:
    d = build_district(40, seed=12)
    t0 = parse_start("2026-03-02")
    sim = Simulation(d, start_ms=t0, end_ms=t0 + 6 * HOUR_MS, seed=12, options=TrafficOptions(nbiot_share=0.5))
    expected = list(Simulation(d, start_ms=t0, end_ms=t0 + 6 * HOUR_MS, seed=12,
                               options=TrafficOptions(nbiot_share=0.5)).messages())  # fmt: skip
    clients = connect_all(MqttEndpoint.parse(mosquitto.url), f"bf-{uuid.uuid4().hex[:6]}", 3, 1)
    try:
        report = publish(sim, clients, clock=None, should_stop=lambda: False)
    finally:
        for c in clients:
            c.close()
    assert report.messages == report.acked == len(expected)
    got = subscriber.wait(len(expected))
    assert len(got) == len(expected)
    by_topic: dict[str, list[bytes]] = {}
    for topic, payload, _ in got:
        by_topic.setdefault(topic, []).append(payload)
    want: dict[str, list[bytes]] = {}
    for m in expected:
        want.setdefault(m.topic, []).append(m.payload)
    assert by_topic == want  # every device's messages, in the order it sent them


def test_live_pacing_never_sends_the_future_and_the_drill_adds_smoke_incidents(
    mosquitto: MosquittoBroker, subscriber: Subscriber
) -> None:
    d = build_district(30, seed=13)
    now = now_ms()
    speed = 1800.0
    start = live_start(now, speed, span_real_s=3.0)
    assert now - 3 * 1799 * 1000 - 60_000 <= start <= now - 3 * 1799 * 1000 + 1
    sim = Simulation(d, start_ms=start, end_ms=None, seed=13)
    clients = connect_all(MqttEndpoint.parse(mosquitto.url), f"live-{uuid.uuid4().hex[:6]}", 1, 1)
    incidents: list[dict[str, object]] = []
    try:
        clock = LiveClock(start, speed)
        report = publish(sim, clients, clock=clock, should_stop=lambda: False, duration_s=4.0,
                         drill=SmokeDrill(d, 13, 1.0), on_incident=incidents.append)  # fmt: skip
    finally:
        for c in clients:
            c.close()
    got = subscriber.wait(report.messages)
    assert len(got) == report.messages > 100
    late = 0
    for _, payload, received in got:
        doc = json.loads(payload)
        for obj in doc.get("batch", [doc]):
            assert obj["ts"] <= received + 1000  # never ahead of the wall clock
            late += obj["ts"] < start
    assert late == 0
    assert len(incidents) >= 3 and report.drill == len(incidents)
    smoke = [json.loads(p) for t, p, _ in got if t.startswith("whistle/v1/smoke/") and t.endswith("/event")]
    assert sum(e["event"] == "alarm" for e in smoke) >= len(incidents)


def test_the_live_clock_runs_fast_then_follows_the_wall_clock() -> None:
    mono = [0.0]
    wall0 = 1_000_000_000
    clock = LiveClock(wall0 - 60_000, 60.0, wall_ms=lambda: wall0, monotonic=lambda: mono[0])
    assert clock.now() == wall0 - 60_000
    mono[0] = 0.5
    assert clock.now() == wall0 - 30_000
    assert clock.seconds_until(wall0 - 15_000) == pytest.approx(0.25)
    mono[0] = 10.0  # caught up: real time from now on
    assert clock.now() == wall0 + 10_000
    assert clock.seconds_until(wall0 + 12_000) == pytest.approx(2.0)
    future = LiveClock(wall0 + 60_000, 10.0, wall_ms=lambda: wall0, monotonic=lambda: mono[0])
    assert not future.capped


@pytest.mark.parametrize("qos", [0, 1])
def test_load_mode_sends_prebuilt_realistic_messages_over_several_connections(
    mosquitto: MosquittoBroker, subscriber: Subscriber, qos: int
) -> None:
    d = build_district(200, seed=14)
    t0 = parse_start("2026-03-02")
    sim = Simulation(d, start_ms=t0, end_ms=t0 + DAY_MS, seed=14)
    clients = connect_all(MqttEndpoint.parse(mosquitto.url), f"load-{uuid.uuid4().hex[:6]}", 3, qos)
    try:
        prepared = prepare(sim.messages(), 30_000, clients)
        report = run_load(prepared, clients, rate=0.0)
    finally:
        for c in clients:
            c.close()
    assert report.messages == 30_000 and report.connections == 3 and report.qos == qos
    if qos:
        assert report.acked == 30_000
    got = subscriber.wait(30_000)
    assert len(got) == 30_000
    assert report.msg_per_s > 0 and report.as_dict()["cpu_share"] is not None


def test_load_mode_keeps_to_its_target_rate(mosquitto: MosquittoBroker) -> None:
    d = build_district(50, seed=15)
    t0 = parse_start("2026-03-02")
    sim = Simulation(d, start_ms=t0, end_ms=t0 + DAY_MS, seed=15)
    clients = connect_all(MqttEndpoint.parse(mosquitto.url), f"rate-{uuid.uuid4().hex[:6]}", 2, 1)
    try:
        prepared = prepare(sim.messages(), 4000, clients)
        report = run_load(prepared, clients, rate=4000.0)
    finally:
        for c in clients:
            c.close()
    # 4,000 messages at 4,000/s take about a second, not less (pacing), and all are acknowledged
    assert report.acked == 4000 and 0.9 <= report.send_seconds <= 3.0


def test_the_wire_client_reports_a_refused_or_missing_broker() -> None:
    from app.broker import free_port

    with pytest.raises(WireError, match="not reachable"):
        WireClient("127.0.0.1", free_port(), "nobody").connect(timeout=2)
    with pytest.raises(ValueError):
        WireClient("127.0.0.1", 1, "x", qos=2)


def whistle(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    return subprocess.run(
        [WHISTLE, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=180, check=False
    )


def test_simulate_writes_byte_identical_registry_and_truth_for_the_same_seed(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b", "c"):
        seed = "9" if name != "c" else "10"
        res = whistle("simulate", "--households", "150", "--seed", seed, "--backfill", "--start", "2026-03-02",
                      "--days", "3", "--malformed-share", "0.001", "--registry-out", str(tmp_path / f"{name}.json"),
                      "--truth-out", str(tmp_path / f"{name}.jsonl"))  # fmt: skip
        assert res.returncode == 0, res.stderr
        runs.append(((tmp_path / f"{name}.json").read_bytes(), (tmp_path / f"{name}.jsonl").read_bytes()))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0] and runs[0][1] != runs[2][1]
    lines = runs[0][1].decode().splitlines()
    assert len(lines) > 20 and all(json.loads(line)["start"] < parse_start("2026-03-05") for line in lines)


def test_simulate_backfills_to_mosquitto_and_reports(mosquitto: MosquittoBroker, subscriber: Subscriber,
                                                     tmp_path: Path) -> None:  # fmt: skip
    res = whistle("simulate", "--households", "30", "--seed", "3", "--backfill", "--days", "0.25",
                  "--nbiot-batch", "0.5", "--late-share", "0.01", "--truth-out", str(tmp_path / "t.jsonl"),
                  env={"WHISTLE_MQTT_URL": mosquitto.url})  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "backfill" and summary["messages"] == summary["acked"] > 1000
    got = subscriber.wait(summary["messages"])
    assert len(got) == summary["messages"]
    # the default span is the last --days before today's midnight (+08:00)
    assert parse_start(summary["end"]) <= now_ms()


def test_simulate_refuses_what_cannot_run(tmp_path: Path) -> None:
    res = whistle("simulate", "--households", "5")
    assert res.returncode == 2 and "WHISTLE_MQTT_URL" in res.stderr
    res = whistle("simulate", "--backfill", "--speed", "10", env={"WHISTLE_MQTT_URL": "mqtt://127.0.0.1:9"})
    assert res.returncode == 2 and "--speed" in res.stderr
    res = whistle("simulate", "--truth-out", str(tmp_path / "t"), env={"WHISTLE_MQTT_URL": "mqtt://127.0.0.1:9"})
    assert res.returncode == 2 and "bounded span" in res.stderr
    res = whistle("simulate", "--late-share", "1.5")
    assert res.returncode == 2 and "share" in res.stderr
    bad = tmp_path / "p.json"
    bad.write_text('{"district": {"no_such": 1}}')
    res = whistle("simulate", "--params", str(bad), "--registry-out", str(tmp_path / "r.json"))
    assert res.returncode == 2 and "no_such" in res.stderr
