"""Devices that keep publishing through a fault: QoS 1, a bounded window, and everything not acknowledged
sent again after the connection comes back, as a device's MQTT stack does.

A message counts as delivered only when its PUBACK came back. When the connection is lost (the endpoint
was killed, the broker restarted) every message in flight is sent again on the next connection, so the
service sees some messages twice: it must store them once (the collector keys readings by device and seq).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WINDOW = 100


class DeviceStream:
    """Publishes `messages` in order on a thread of its own (`start`, `join`), reconnecting until `deadline_s`."""

    def __init__(self, url: str, messages: Sequence[tuple[str, bytes]], *, client_id: str, deadline_s: float) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        self.host, self.port = parts.hostname, parts.port or 1883
        self.messages = messages
        self.client_id = client_id
        self.deadline = time.monotonic() + deadline_s
        self.acked = 0
        self.resent = 0
        self.connections = 0
        self.error: str | None = None
        self._cond = threading.Condition()
        self._inflight: dict[int, int] = {}  # mid -> message index
        self._done: set[int] = set()
        self._connected = False
        self._thread = threading.Thread(target=self._run, name=f"devices-{client_id}", daemon=True)
        self.paused = threading.Event()  # set: hold the next messages (the test decides when the rest goes)

    def start(self) -> DeviceStream:
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> None:
        """Wait for the end; raise if not everything was acknowledged."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"devices: {self.acked} of {len(self.messages)} acknowledged after {timeout_s:.0f} s")
        if self.error:
            raise AssertionError(f"devices: {self.error}")

    def wait_acked(self, n: int, timeout_s: float) -> None:
        """Until `n` messages are acknowledged (fails at the deadline or on the stream's error)."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while self.acked < n:
                if self.error or time.monotonic() > end:
                    raise AssertionError(f"devices: {self.acked} of {n} acknowledged ({self.error or 'timeout'})")
                self._cond.wait(0.5)

    def _client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        c.max_inflight_messages_set(WINDOW)
        c.max_queued_messages_set(0)

        def on_connect(client: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
            with self._cond:
                self._connected = not getattr(rc, "is_failure", False)
                self._cond.notify_all()

        def on_disconnect(client: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
            with self._cond:
                self._connected = False
                self._cond.notify_all()

        def on_publish(client: mqtt.Client, u: object, mid: int, rc: object, p: object) -> None:
            with self._cond:
                i = self._inflight.pop(mid, None)
                if i is None:
                    self._early.add(mid)
                elif i not in self._done:
                    self._done.add(i)
                    self.acked += 1
                self._cond.notify_all()

        c.on_connect, c.on_disconnect, c.on_publish = on_connect, on_disconnect, on_publish
        return c

    def _connect(self) -> mqtt.Client | None:
        while time.monotonic() < self.deadline:
            c = self._client()
            try:
                c.connect(self.host, self.port, keepalive=10)
            except OSError:
                time.sleep(0.2)
                continue
            c.loop_start()
            with self._cond:
                self._cond.wait_for(lambda: self._connected, 5.0)
                if self._connected:
                    self.connections += 1
                    return c
            c.loop_stop()
            time.sleep(0.2)
        return None

    def _run(self) -> None:
        self._early: set[int] = set()
        todo: deque[int] = deque(range(len(self.messages)))
        while todo or self._inflight:
            client = self._connect()
            if client is None:
                self.error = f"no connection to {self.host}:{self.port} before the deadline ({self.acked} acked)"
                return
            try:
                self._pump(client, todo)
            finally:
                client.loop_stop()
                client.disconnect()
            with self._cond:  # what was in flight on the lost connection goes again
                lost = sorted(i for i in self._inflight.values() if i not in self._done)
                self._inflight.clear()
                self._early.clear()
            if lost:
                self.resent += len(lost)
                todo.extendleft(reversed(lost))
            if time.monotonic() > self.deadline:
                self.error = f"deadline passed with {self.acked} of {len(self.messages)} acknowledged"
                return
        with self._cond:
            self._cond.notify_all()

    def _pump(self, client: mqtt.Client, todo: deque[int]) -> None:
        while time.monotonic() < self.deadline:
            with self._cond:
                self._cond.wait_for(
                    lambda: not self._connected or (len(self._inflight) < WINDOW and not self.paused.is_set()), 0.5
                )
                if not self._connected:
                    return
                if not todo:
                    if not self._inflight:
                        return
                    continue
                if len(self._inflight) >= WINDOW or self.paused.is_set():
                    continue
            i = todo.popleft()
            topic, payload = self.messages[i]
            info = client.publish(topic, payload, qos=1)
            with self._cond:
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    todo.appendleft(i)
                    return
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    if i not in self._done:
                        self._done.add(i)
                        self.acked += 1
                else:
                    self._inflight[info.mid] = i
