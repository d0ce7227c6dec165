"""paho-mqtt as an asyncio source: QoS 1, a persistent session, and acknowledgement only on request.

paho runs its network loop on its own thread; messages are appended to a buffer the asyncio
side drains in batches. Because acknowledgement is manual, the broker keeps every message it
has delivered but not had acknowledged, and delivers it again after a reconnect: a message is
acknowledged only once the collector has handed it on durably.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from whistle.mqtt import MqttEndpoint
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)


class MqttError(RuntimeError):
    """The broker could not be reached or refused us."""


@dataclass(frozen=True, slots=True)
class MqttMessage:
    topic: str
    payload: bytes
    qos: int
    mid: int
    received_at: int
    connection: int = 0
    dup: bool = False  # the broker is delivering it again (it was sent before, maybe handled)
    token: int = 0  # the embedded endpoint's place of the message in its connection's order (0: nothing to ack)
    refused: str | None = None  # a reason the endpoint refused it (the sender may not publish there)


class MessageSource(Protocol):
    """Where a collector lane takes its messages from: an MQTT subscription (`MqttSource`) or the embedded
    endpoint's lane (`collectors.ingest.MessageQueue`). `ack` is called once the messages are stored."""

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def get_batch(
        self, max_items: int, linger_ms: int, timeout: float = 1.0, max_bytes: int | None = None
    ) -> list[MqttMessage]: ...

    def ack(self, messages: Sequence[MqttMessage]) -> None: ...


class MqttSource:
    """Subscribes to `topics` at QoS 1 with a persistent session; `ack()` releases messages."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        topics: Sequence[str],
        share_group: str | None = None,
        keepalive: int = 30,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.topics = [f"$share/{share_group}/{t}" if share_group else t for t in topics]
        self._keepalive = keepalive
        self._buffer: deque[MqttMessage] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._has_data = asyncio.Event()
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._client: mqtt.Client | None = None
        self._connection = 0  # bumped on every connect: a packet id is only meaningful within one

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, timeout: float = 15.0) -> None:
        """Connect and subscribe; raises MqttError naming the broker if it cannot."""
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if self.endpoint.username:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        try:
            client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=self._keepalive)
            client.loop_start()
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except (TimeoutError, OSError) as exc:
            await self.stop()
            why = self._connect_error or "no answer"
            raise MqttError(f"MQTT broker {self.endpoint.host}:{self.endpoint.port} not reachable: {why}") from exc
        log.info("subscribed to %s as %s", self.topics, self.client_id)

    async def stop(self) -> None:
        """Disconnect (idempotent). Unacknowledged messages stay queued at the broker."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self._connected.clear()
        self._has_data.set()

    async def __aenter__(self) -> MqttSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # paho thread ---------------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None
    ) -> None:
        if rc.is_failure:
            self._connect_error = str(rc)
            log.error("MQTT connect refused: %s", rc)
            return
        self._connection += 1
        present = bool(getattr(flags, "session_present", False))
        log.info("MQTT connected as %s (connection %d, session present: %s)", self.client_id, self._connection, present)
        # Subscribing again on every connect is harmless with a persistent session and needed without one.
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, rcs: list[ReasonCode], props: object
    ) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            self._connect_error = f"subscription refused: {failed}"
            log.error("MQTT subscription refused: %s", failed)
            return
        self._connected.set()  # connected means receiving: the broker keeps QoS 1 messages for us from here
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._ready.set)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None
    ) -> None:
        self._connected.clear()
        # Messages not yet taken will be delivered again on the resumed session; drop these copies.
        self._buffer.clear()
        if rc.is_failure:
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", rc)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._buffer.append(
            MqttMessage(msg.topic, bytes(msg.payload), msg.qos, msg.mid, now_ms(), self._connection, bool(msg.dup))
        )
        if not self._has_data.is_set():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._has_data.set)

    # asyncio side -------------------------------------------------------------------------

    async def get_batch(
        self, max_items: int, linger_ms: int, timeout: float = 1.0, max_bytes: int | None = None
    ) -> list[MqttMessage]:
        """Up to max_items messages (and about max_bytes of payload): waits up to `timeout` for the first,
        then `linger_ms` for more."""
        if not self._buffer:
            self._has_data.clear()
            try:
                await asyncio.wait_for(self._has_data.wait(), timeout)
            except TimeoutError:
                return []
            if linger_ms and len(self._buffer) < max_items:
                await asyncio.sleep(linger_ms / 1000)
        out: list[MqttMessage] = []
        buf = self._buffer
        budget = max_bytes if max_bytes is not None else -1
        while buf and len(out) < max_items and budget != 0:
            m = buf.popleft()
            out.append(m)
            if budget > 0:
                budget = max(0, budget - len(m.payload))
        return out

    def ack(self, messages: Sequence[MqttMessage]) -> None:
        """Acknowledge messages to the broker, now that they are handed on."""
        client = self._client
        if client is None:
            return
        current = self._connection
        for m in messages:
            # A message from an earlier connection is redelivered on this one and acknowledged then.
            if m.qos > 0 and m.connection == current:
                rc = client.ack(m.mid, m.qos)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    # Not connected: the broker will deliver the message again after reconnecting.
                    log.debug("ack of mid %s not sent: %s", m.mid, rc)
