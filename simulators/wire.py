"""A minimal MQTT 3.1.1 publisher on a plain socket, for backfills and load: pre-encoded packets, QoS 0 or 1.

paho-mqtt spends tens of microseconds of Python per message; a simulator that must never be a
benchmark's bottleneck encodes PUBLISH packets once and writes them in large chunks. This
client speaks just enough of the protocol for that: CONNECT/CONNACK (with username and
password), PUBLISH at QoS 0 or 1, PUBACK, PINGREQ/PINGRESP, DISCONNECT. At QoS 1 it keeps a
bounded window of unacknowledged messages (packet ids are 16-bit: the window stays far below
65,535) and counts PUBACKs, which Mosquitto sends in order. It does not reconnect: a broken
connection raises `WireError`, and a rerun is harmless because the collector drops duplicate
(device, channel, seq).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from dataclasses import dataclass

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PINGREQ = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT = b"\xe0\x00"
MAX_PACKET_ID = 65_535


class WireError(ConnectionError):
    """The broker refused us or the connection broke."""


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def connect_packet(
    client_id: str, username: str | None = None, password: str | None = None, keepalive: int = 60
) -> bytes:
    flags = 0x02  # clean session
    payload = _string(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += _string(username.encode())
        if password is not None:
            flags |= 0x40
            payload += _string(password.encode())
    var = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = var + payload
    return bytes([CONNECT]) + remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, qos: int = 1, packet_id: int = 1) -> bytes:
    """One PUBLISH packet (QoS 1 carries `packet_id`)."""
    head = _string(topic) + (struct.pack("!H", packet_id) if qos else b"")
    return bytes([PUBLISH | (qos << 1)]) + remaining_length(len(head) + len(payload)) + head + payload


@dataclass(slots=True)
class WireStats:
    sent: int = 0
    acked: int = 0
    bytes: int = 0


class WireClient:
    """One blocking MQTT connection that publishes pre-encoded packets."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        qos: int = 1,
        window: int = 20_000,
        keepalive: int = 60,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not 0 < window < MAX_PACKET_ID:
            raise ValueError("the window must be between 1 and 65,534")
        self.host, self.port, self.client_id = host, port, client_id
        self.username, self.password = username, password
        self.qos = qos
        self.window = window
        self.keepalive = keepalive
        self.stats = WireStats()
        self._sock: socket.socket | None = None
        self._rx = b""
        self._next_id = 1
        self._last_io = time.monotonic()

    @property
    def in_flight(self) -> int:
        return self.stats.sent - self.stats.acked if self.qos else 0

    def connect(self, timeout: float = 10.0) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise WireError(f"MQTT broker {self.host}:{self.port} not reachable: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.sendall(connect_packet(self.client_id, self.username, self.password, self.keepalive))
        deadline = time.monotonic() + timeout
        while len(self._rx) < 4:
            if time.monotonic() > deadline:
                raise WireError("no CONNACK from the broker")
            chunk = sock.recv(4096)
            if not chunk:
                raise WireError("the broker closed the connection during CONNECT")
            self._rx += chunk
        if self._rx[0] != CONNACK or self._rx[3] != 0:
            raise WireError(f"the broker refused the connection (CONNACK return code {self._rx[3]})")
        self._rx = self._rx[4:]
        sock.settimeout(None)
        self._sock = sock
        self._last_io = time.monotonic()

    def next_ids(self, n: int) -> list[int]:
        """The packet ids of the next `n` QoS 1 messages (1..65535, cycling)."""
        first = self._next_id
        ids = [(first - 1 + i) % MAX_PACKET_ID + 1 for i in range(n)]
        self._next_id = (first - 1 + n) % MAX_PACKET_ID + 1
        return ids

    def send_packets(self, data: bytes, count: int) -> None:
        """Write `count` pre-encoded PUBLISH packets, waiting first while the window is full."""
        assert self._sock is not None, "connect() first"
        if self.qos:
            while self.in_flight + count > self.window:
                self.read_acks(timeout=5.0, require=True)
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise WireError(f"connection to the broker broke: {exc}") from exc
        self.stats.sent += count
        self.stats.bytes += len(data)
        self._last_io = time.monotonic()
        if self.qos:
            self.read_acks(timeout=0.0)

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Encode and write several messages as one chunk."""
        ids = self.next_ids(len(messages)) if self.qos else [0] * len(messages)
        data = b"".join(publish_packet(t.encode(), p, self.qos, i) for (t, p), i in zip(messages, ids, strict=True))
        self.send_packets(data, len(messages))

    def read_acks(self, timeout: float = 0.0, *, require: bool = False) -> int:
        """Read whatever the broker sent; returns the PUBACKs counted. `require`: at least one, or fail."""
        assert self._sock is not None
        got = 0
        deadline = time.monotonic() + timeout
        while True:
            wait = 0.0 if got else max(0.0, deadline - time.monotonic())
            if not select.select([self._sock], [], [], wait)[0]:
                if require and not got:
                    raise WireError(f"the broker acknowledged nothing for {timeout:g} s")
                return got
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise WireError("the broker closed the connection")
            got += self._parse(chunk)

    def _parse(self, chunk: bytes) -> int:
        buf = self._rx + chunk
        i = 0
        n = len(buf)
        acks = 0
        while i + 2 <= n:
            kind = buf[i] & 0xF0
            length = buf[i + 1]
            if length & 0x80:
                raise WireError("unexpected long packet from the broker")
            if i + 2 + length > n:
                break
            if kind == PUBACK:
                acks += 1
            elif kind != PINGRESP:
                raise WireError(f"unexpected packet type {kind >> 4} from the broker")
            i += 2 + length
        self._rx = buf[i:]
        self.stats.acked += acks
        return acks

    def ping_if_idle(self) -> None:
        """Keep the connection alive while a paced run has nothing to send."""
        if self._sock is not None and time.monotonic() - self._last_io > self.keepalive / 2:
            self._sock.sendall(PINGREQ)
            self._last_io = time.monotonic()
        if self._sock is not None and self.qos:
            self.read_acks(timeout=0.0)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait (bounded) until every QoS 1 message is acknowledged."""
        deadline = time.monotonic() + timeout
        while self.in_flight > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.read_acks(timeout=min(1.0, left))
        return True

    def close(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):
            self._sock.sendall(DISCONNECT)
        self._sock.close()
        self._sock = None

    def __enter__(self) -> WireClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
