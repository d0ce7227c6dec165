"""Publishing devices' traffic over MQTT at QoS 1, as devices and gateways do.

`Publisher` is a small paho-mqtt client of our own (the project's simulator code is not used):
every message goes out at QoS 1 and counts as published only when the broker's PUBACK came back.
At most `window` messages are in flight; the next one waits for an acknowledgement, so memory
stays bounded however fast the file is read and a slow broker slows the publisher down instead
of piling messages up in paho's queue. A lost connection is an error (the evaluation must know
what reached the broker), not something retried quietly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from evaluation.frontdoor.errors import EvaluationError

DEFAULT_WINDOW = 200


@dataclass(frozen=True, slots=True)
class Published:
    """What a publisher handed to the broker and had acknowledged."""

    messages: int
    readings: int
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        return {"messages": self.messages, "readings": self.readings, "seconds": round(self.seconds, 1)}


def endpoint(url: str) -> tuple[str, int]:
    """(host, port) of `mqtt://host:port`."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise EvaluationError(f"not an MQTT URL: {url!r} (expected mqtt://host:port)")
    return parts.hostname, parts.port or 1883


class Publisher:
    """QoS 1 with a bounded in-flight window; `close()` waits for every acknowledgement."""

    def __init__(self, url: str, *, client_id: str = "whistle-evaluation", window: int = DEFAULT_WINDOW) -> None:
        self.host, self.port = endpoint(url)
        self.window = max(1, window)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self._client.max_inflight_messages_set(self.window)
        self._client.max_queued_messages_set(0)
        self._cond = threading.Condition()
        self._pending: set[int] = set()
        self._early: set[int] = set()
        self._connected = False
        self._lost: str | None = None
        self.sent = 0
        self.acked = 0
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        with self._cond:
            if getattr(rc, "is_failure", False):
                self._lost = f"the broker refused the connection: {rc}"
            else:
                self._connected = True
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        with self._cond:
            if self._connected and self._lost is None:
                self._lost = f"the broker closed the connection ({rc})"
            self._connected = False
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        # paho calls this on its network thread holding its own message lock, which `publish` also takes:
        # so `publish` never holds our condition while it calls into paho.
        with self._cond:
            if mid in self._pending:
                self._pending.discard(mid)
                self.acked += 1
            else:  # acknowledged before `publish` recorded it as pending
                self._early.add(mid)
            self._cond.notify_all()

    def connect(self, timeout_s: float = 30.0) -> None:
        try:
            self._client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise EvaluationError(f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}") from None
        self._client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._connected or self._lost is not None, timeout_s):
                raise EvaluationError(f"no CONNACK from the MQTT broker at {self.host}:{self.port} in {timeout_s} s")
            if self._lost:
                raise EvaluationError(self._lost)

    def publish(self, topic: str, payload: bytes, *, timeout_s: float = 120.0) -> None:
        """Send at QoS 1 once fewer than `window` messages await their PUBACK."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._pending) < self.window or self._lost is not None, timeout_s):
                raise EvaluationError(f"the broker acknowledged nothing for {timeout_s:.0f} s ({self.acked} so far)")
            if self._lost:
                raise EvaluationError(f"{self._lost} after {self.acked} acknowledged messages")
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise EvaluationError(f"publishing to {topic} failed: {mqtt.error_string(info.rc)}")
        with self._cond:
            self.sent += 1
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.acked += 1
            else:
                self._pending.add(info.mid)

    def drain(self, timeout_s: float = 300.0) -> None:
        """Wait until every message sent has been acknowledged."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._pending or self._lost is not None, timeout_s):
                raise EvaluationError(f"{len(self._pending)} messages unacknowledged after {timeout_s:.0f} s")
            if self._lost and self._pending:
                raise EvaluationError(f"{self._lost} with {len(self._pending)} messages unacknowledged")

    def close(self) -> None:
        self._connected = False
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Publisher:
        self.connect()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if et is None:
                self.drain()
        finally:
            self.close()


def read_messages(path: Path) -> Iterator[tuple[str, bytes, int]]:
    """(topic, payload bytes, readings in it) per line of a messages file (`send_at`, `topic`, `payload`),
    in file order. The payload is passed on byte for byte as the generator wrote it."""
    marker = ',"payload":'
    with path.open("r", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            head, sep, rest = line.rstrip("\n").partition(marker)
            if sep and rest.endswith("}"):
                meta = json.loads(head + "}")
                payload = rest[:-1]
            else:  # another key order: decode the whole line
                meta = json.loads(line)
                payload = json.dumps(meta["payload"], separators=(",", ":"), ensure_ascii=False)
            if "topic" not in meta:
                raise EvaluationError(f"{path}:{n}: no topic")
            items = payload.count('"ts"') if payload.startswith('{"batch"') else 1
            yield str(meta["topic"]), payload.encode("utf-8"), items


def publish_all(url: str, messages: Iterable[tuple[str, bytes, int]], *, window: int = DEFAULT_WINDOW) -> Published:
    """Publish in order at QoS 1; returns once every message was acknowledged."""
    began = time.monotonic()
    readings = 0
    with Publisher(url, window=window) as pub:
        for topic, payload, items in messages:
            pub.publish(topic, payload)
            readings += items
    return Published(pub.acked, readings, time.monotonic() - began)
