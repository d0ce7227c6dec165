"""A small paho client for broker tests: connect (and see the broker's answer), subscribe, publish and wait
for the acknowledgement, collect what arrives, notice being disconnected. Every wait is bounded."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Probe:
    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    rc: str = ""
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout: float = 10.0) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1: PUBACK)."""
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"no acknowledgement for {topic} within {timeout} s"

    def subscribe(self, topic: str, *, qos: int = 1, timeout: float = 10.0) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, rcs, props=None: done.set()
        self.client.subscribe(topic, qos=qos)
        assert done.wait(timeout), f"no SUBACK for {topic}"

    def wait_for(self, topic: str, payload: bytes | None = None, timeout: float = 10.0) -> None:
        """Until a message on `topic` (with `payload`) has arrived."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not any(t == topic and (payload is None or p == payload) for t, p in self.messages):
                left = deadline - time.monotonic()
                assert left > 0, f"{topic} did not arrive within {timeout} s; got {self.messages}"
                self._arrived.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    clean_session: bool = True,
    ca: Path | None = None,
    timeout: float = 10.0,
) -> Probe:
    """Connect and wait for the CONNACK; `probe.rc` is the broker's answer ("Success", "Not authorized", ...)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean_session
    )
    probe = Probe(client)
    if username is not None:
        client.username_pw_set(username, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)

    def on_connect(c: mqtt.Client, u: object, flags: object, rc: object, props: object = None) -> None:
        probe.rc = str(rc)
        if str(rc) == "Success":
            probe.connected.set()
        probe.answered.set()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        with probe._arrived:
            probe.messages.append((m.topic, m.payload))
            probe._arrived.notify_all()

    def on_disconnect(c: mqtt.Client, u: object, flags: object, rc: object, props: object = None) -> None:
        probe.disconnects.append(str(rc))
        probe.answered.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(30, 60)  # a refused client must not reconnect during a test
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not probe.answered.wait(timeout):
        probe.close()
        raise AssertionError(f"no CONNACK from 127.0.0.1:{port} within {timeout} s")
    return probe


def refused(port: int, **kw: object) -> str:
    """Connect expecting a refusal; returns the broker's answer (or the disconnect) and closes."""
    probe = connect(port, **kw)  # type: ignore[arg-type]
    try:
        return probe.rc or (probe.disconnects[0] if probe.disconnects else "")
    finally:
        probe.close()
