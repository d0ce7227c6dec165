"""The embedded MQTT endpoint: devices publish to the collector itself, acknowledged only once stored.

Why not a broker in front. A broker acknowledges a QoS 1 message when it has it in memory; a power cut or
a killed process then loses what it held and had not delivered, and with the database away it must hold
everything the devices send (amqtt gives up after 5 s). Here the PUBACK of a PUBLISH is sent after the
transaction that stores its readings commits, so "accepted" means "in PostgreSQL": a device whose message
was not acknowledged still holds it and sends it again on its next connection, and a database outage is
ridden out by not acknowledging (the devices' in-flight windows fill, they stop sending: backpressure all
the way to them). It also saves the broker's hop, which on two cores is a large share of the work.

What it speaks. MQTT 3.1.1 and 5.0, the publishing side: CONNECT (username and password checked against
the broker accounts of the registry, unless the endpoint is open), PUBLISH at QoS 0, 1 and 2 (PUBACK or
PUBREC after commit, PUBCOMP at PUBREL), PINGREQ, DISCONNECT, the will (a device's `{"online": false}`
on its status channel, taken as one of its messages when its connection ends without DISCONNECT or its
keep-alive runs out: 1.5 times the interval). Acknowledgements go out in the order the PUBLISHes came on
a connection (MQTT 4.6), however the two lanes finish: a fire is stored and dispatched at once, its PUBACK
waits for the meter data before it on that connection. SUBSCRIBE is refused (0x80, 5.0: 0x87): this is an
ingest endpoint, not a message broker; put Mosquitto or EMQX in front (`WHISTLE_MQTT_URL`) where other
clients must subscribe to the devices' traffic. A client id is unique within its account: a new
connection of the same account and id takes the session over (the old one is closed, its will published).

Flow control. A connection with `max_inflight` unacknowledged messages (5.0: Receive Maximum, announced in
CONNACK) stops being read until some are acknowledged — and is read again as soon as they are: the client may
then send as many as were acknowledged (the acknowledgements of a batch come at once, so this does not flap) —
and every connection stops being read while the lanes hold more than `max_queued_bytes`, until they hold less
than half. Several collector processes
can share one port (SO_REUSEPORT): the kernel spreads connections over them, a connection stays with one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from collectors.mqtt import MqttMessage
from whistle.protocol import LIFE_SAFETY_TYPES, TOPIC_PREFIX
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15
_U16 = struct.Struct("!H")
_PRIORITY_TYPES = frozenset(t.value for t in LIFE_SAFETY_TYPES)
NOT_AUTHORIZED = "not_authorized"


class ProtocolError(Exception):
    """The client broke the protocol: the connection is closed (its will, if any, is published)."""


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def _read_varint(buf: bytes | bytearray, i: int) -> tuple[int, int]:
    """(value, next index); ProtocolError when longer than 4 bytes; IndexError when incomplete."""
    value, shift = 0, 0
    for k in range(4):
        b = buf[i + k]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + k + 1
        shift += 7
    raise ProtocolError("malformed remaining length")


def _string(buf: bytes, i: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(buf, i)
    end = i + 2 + n
    if end > len(buf):
        raise ProtocolError("string runs past the packet")
    try:
        return buf[i + 2 : end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise ProtocolError("string is not UTF-8") from exc


def _binary(buf: bytes, i: int) -> tuple[bytes, int]:
    (n,) = _U16.unpack_from(buf, i)
    end = i + 2 + n
    if end > len(buf):
        raise ProtocolError("binary runs past the packet")
    return buf[i + 2 : end], end


def _skip_properties(buf: bytes, i: int) -> int:
    length, j = _read_varint(buf, i)
    if j + length > len(buf):
        raise ProtocolError("properties run past the packet")
    return j + length


@dataclass(frozen=True, slots=True)
class Account:
    """What a connected client may publish: every device topic, or the topics of these devices."""

    username: str
    devices: frozenset[str] | None  # None: every device (an open endpoint, a gateway for all)

    def may_publish(self, topic: str) -> bool:
        if self.devices is None:
            return True
        parts = topic.split("/")
        return len(parts) == 5 and parts[3] in self.devices


Authenticate = Callable[[str, str | None, bytes | None], Awaitable[Account | None]]


async def open_endpoint(client_id: str, username: str | None, password: bytes | None) -> Account:
    """Anyone may connect and publish for any device (the demo, an open test endpoint)."""
    return Account(username or "", None)


@dataclass
class _Pending:
    token: int
    packet_id: int
    qos: int
    done: bool = False


class MessageQueue:
    """One lane's messages, taken in batches by the collector; the `MessageSource` of a lane."""

    def __init__(self, server: IngestServer, name: str) -> None:
        self._server = server
        self.name = name
        self._items: deque[MqttMessage] = deque()
        self._has_data = asyncio.Event()
        self.bytes = 0

    @property
    def connected(self) -> bool:
        return self._server.listening

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def put(self, m: MqttMessage) -> None:
        self._items.append(m)
        self.bytes += len(m.payload)
        self._has_data.set()

    async def get_batch(
        self, max_items: int, linger_ms: int, timeout: float = 1.0, max_bytes: int | None = None
    ) -> list[MqttMessage]:
        """Up to max_items messages (and about max_bytes of payload): waits up to `timeout` for the first, then
        `linger_ms` for more."""
        if not self._items:
            self._has_data.clear()
            try:
                await asyncio.wait_for(self._has_data.wait(), timeout)
            except TimeoutError:
                return []
            if linger_ms and len(self._items) < max_items:
                await asyncio.sleep(linger_ms / 1000)
        out: list[MqttMessage] = []
        budget = max_bytes if max_bytes is not None else -1
        items = self._items
        while items and len(out) < max_items and budget != 0:
            m = items.popleft()
            out.append(m)
            self.bytes -= len(m.payload)
            if budget > 0:
                budget = max(0, budget - len(m.payload))
        self._server.taken()
        return out

    def ack(self, messages: Sequence[MqttMessage]) -> None:
        """The messages are stored: acknowledge them to their clients (in each connection's order)."""
        self._server.ack(messages)


class _Connection(asyncio.Protocol):
    def __init__(self, server: IngestServer) -> None:
        self.server = server
        self.id = server.next_connection_id()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.version = 0  # 4: 3.1.1, 5: 5.0 (3: 3.1)
        self.client_id = ""
        self.account: Account | None = None
        self.keepalive_s = 0
        self.last_heard = asyncio.get_running_loop().time()
        self.will: tuple[str, bytes] | None = None
        self.pending: deque[_Pending] = deque()
        self.by_token: dict[int, _Pending] = {}
        self.awaiting_rel: set[int] = set()  # QoS 2 packet ids acknowledged with PUBREC, waiting for PUBREL
        self.tokens = 0
        self.paused = False
        self.closing = False
        self.connecting: asyncio.Task[None] | None = None

    # asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections[self.id] = self

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.pop(self.id, None)
        self.server.forget(self)
        if not self.closing:
            self._publish_will()
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.last_heard = asyncio.get_running_loop().time()
        self.buf += data
        try:
            self._parse()
        except ProtocolError as exc:
            log.warning("MQTT client %s (%s): %s; closing", self.client_id or "?", self.peer, exc)
            self.abort()

    # ---------------------------------------------------------------------------------------

    @property
    def peer(self) -> str:
        if self.transport is None:
            return "?"
        addr = self.transport.get_extra_info("peername")
        return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        """Close without DISCONNECT: the will is published."""
        if self.transport is not None:
            self.transport.close()

    def _publish_will(self) -> None:
        if self.will is not None and self.account is not None:
            topic, payload = self.will
            self.will = None
            self.server.deliver(self, topic, payload, qos=0, packet_id=0, dup=False, will=True)

    def _parse(self) -> None:
        buf = self.buf
        i = 0
        n = len(buf)
        while i < n:
            if self.connecting is not None or self.paused:
                break  # nothing else until the CONNECT is answered, or while this connection is held back
            try:
                length, body = _read_varint(buf, i + 1)
            except IndexError:
                break
            if length > self.server.max_packet_bytes:
                raise ProtocolError(f"packet of {length} bytes exceeds {self.server.max_packet_bytes}")
            if body + length > n:
                break
            first = buf[i]
            packet = bytes(buf[body : body + length])
            i = body + length
            self._handle(first >> 4, first & 0x0F, packet)
            if self.transport is None or self.transport.is_closing():
                break
        del buf[:i]

    def _handle(self, kind: int, flags: int, p: bytes) -> None:
        if self.account is None:
            if kind != CONNECT or self.version:
                raise ProtocolError("the first packet must be CONNECT")
            self._connect(p)
            return
        if kind == PUBLISH:
            self._publish(flags, p)
        elif kind == PUBREL:
            (pid,) = _U16.unpack_from(p, 0)
            self.awaiting_rel.discard(pid)
            self.write(_packet(PUBCOMP << 4, _U16.pack(pid)))
        elif kind == PINGREQ:
            self.write(b"\xd0\x00")
        elif kind == DISCONNECT:
            reason = p[0] if self.version == 5 and p else 0
            if reason == 0x04:  # 5.0: disconnect with will message
                self._publish_will()
            self.will = None
            self.closing = True
            if self.transport is not None:
                self.transport.close()
        elif kind == SUBSCRIBE:
            self._refuse_subscribe(p)
        elif kind == UNSUBSCRIBE:
            (pid,) = _U16.unpack_from(p, 0)
            if self.version == 5:
                count = self._count_topics(p, _skip_properties(p, 2), options=False)
                self.write(_packet(UNSUBACK << 4, _U16.pack(pid) + b"\x00" + b"\x11" * count))
            else:
                self.write(_packet(UNSUBACK << 4, _U16.pack(pid)))
        elif kind in (PUBACK, PUBREC, PUBCOMP):
            pass  # we send no PUBLISH: nothing of ours to acknowledge
        elif kind == CONNECT:
            raise ProtocolError("a second CONNECT")
        else:
            raise ProtocolError(f"unsupported packet type {kind}")

    def _count_topics(self, p: bytes, i: int, *, options: bool) -> int:
        count = 0
        while i < len(p):
            _, i = _string(p, i)
            i += 1 if options else 0
            count += 1
        return count

    def _refuse_subscribe(self, p: bytes) -> None:
        (pid,) = _U16.unpack_from(p, 0)
        if self.version == 5:
            count = self._count_topics(p, _skip_properties(p, 2), options=True)
            self.write(_packet(SUBACK << 4, _U16.pack(pid) + b"\x00" + b"\x87" * count))
        else:
            count = self._count_topics(p, 2, options=True)
            self.write(_packet(SUBACK << 4, _U16.pack(pid) + b"\x80" * count))

    # CONNECT --------------------------------------------------------------------------------

    def _connect(self, p: bytes) -> None:
        name, i = _string(p, 0)
        level = p[i]
        if name not in ("MQTT", "MQIsdp") or level not in (3, 4, 5):
            self.version = 4
            self.write(_packet(CONNACK << 4, b"\x00\x01"))  # unacceptable protocol version
            self.closing = True
            self.abort()
            return
        self.version = level
        flags = p[i + 1]
        (self.keepalive_s,) = _U16.unpack_from(p, i + 2)
        i += 4
        if level == 5:
            i = _skip_properties(p, i)
        client_id, i = _string(p, i)
        clean = bool(flags & 0x02)
        will: tuple[str, bytes] | None = None
        if flags & 0x04:
            if level == 5:
                i = _skip_properties(p, i)
            will_topic, i = _string(p, i)
            will_payload, i = _binary(p, i)
            will = (will_topic, will_payload)
        username = password = None
        if flags & 0x80:
            username, i = _string(p, i)
        if flags & 0x40:
            password, i = _binary(p, i)
        self.client_id = client_id
        self.connecting = asyncio.ensure_future(self._accept(client_id, username, password, clean, will))

    async def _accept(
        self, client_id: str, username: str | None, password: bytes | None, clean: bool, will: tuple[str, bytes] | None
    ) -> None:
        try:
            account = await self.server.authenticate(client_id, username, password)
        except Exception:
            log.exception("authenticating MQTT client %s failed", client_id)
            account = None
        if self.transport is None or self.transport.is_closing():
            return
        if account is None:
            self.server.stats.refused_connections += 1
            log.warning(
                "MQTT client %s (%s, user %s) refused: bad username or password", client_id, self.peer, username
            )
            code = b"\x86" if self.version == 5 else b"\x04"
            self.write(_packet(CONNACK << 4, b"\x00" + code + (b"\x00" if self.version == 5 else b"")))
            self.closing = True
            self.abort()
            return
        if will is not None and not account.may_publish(will[0]):
            will = None  # a will on another device's topic is not kept
        self.account = account
        self.will = will
        present = self.server.take_session(self, clean)
        ack = bytes((1 if present else 0, 0))
        if self.version == 5:
            # Receive Maximum: at most this many QoS 1/2 messages unacknowledged on this connection
            ack += encode_varint(3) + b"\x21" + _U16.pack(self.server.max_inflight)
        self.write(_packet(CONNACK << 4, ack))
        self.connecting = None
        if self.buf:
            try:
                self._parse()
            except ProtocolError as exc:
                log.warning("MQTT client %s (%s): %s; closing", self.client_id, self.peer, exc)
                self.abort()

    # PUBLISH ---------------------------------------------------------------------------------

    def _publish(self, flags: int, p: bytes) -> None:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise ProtocolError("QoS 3")
        topic, i = _string(p, 0)
        pid = 0
        if qos:
            (pid,) = _U16.unpack_from(p, i)
            i += 2
        if self.version == 5:
            i = _skip_properties(p, i)
        if qos == 2 and pid in self.awaiting_rel:
            self.write(_packet(PUBREC << 4, _U16.pack(pid)))  # a retransmission of one we hold: already stored
            return
        self.server.deliver(self, topic, p[i:], qos=qos, packet_id=pid, dup=bool(flags & 0x08))

    def track(self, qos: int, packet_id: int) -> int:
        """Note a QoS 1/2 message awaiting its commit; returns its token (its place in this connection's order)."""
        self.tokens += 1
        entry = _Pending(self.tokens, packet_id, qos)
        self.pending.append(entry)
        self.by_token[entry.token] = entry
        if len(self.pending) >= self.server.max_inflight and not self.paused:
            self.pause()
        return entry.token

    def acked(self, tokens: Iterable[int], refused: Iterable[int] = ()) -> None:
        """Stored: acknowledge, in order, every message at the head of this connection's queue that is done."""
        refusing = set(refused)
        for t in tokens:
            entry = self.by_token.get(t)
            if entry is not None:
                entry.done = True
        out: list[bytes] = []
        while self.pending and self.pending[0].done:
            e = self.pending.popleft()
            del self.by_token[e.token]
            if e.qos == 1:
                if self.version == 5 and e.token in refusing:
                    out.append(_packet(PUBACK << 4, _U16.pack(e.packet_id) + b"\x87"))
                else:
                    out.append(_packet(PUBACK << 4, _U16.pack(e.packet_id)))
            else:
                self.awaiting_rel.add(e.packet_id)
                out.append(_packet(PUBREC << 4, _U16.pack(e.packet_id)))
        if out:
            self.write(b"".join(out))
        if self.paused and len(self.pending) < self.server.max_inflight and not self.server.full:
            self.resume()  # the window open again: the client may send as many as were acknowledged

    def pause(self) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()
            if self.buf:  # what was read before the pause and not yet handled
                asyncio.get_running_loop().call_soon(self._parse_safely)

    def _parse_safely(self) -> None:
        try:
            self._parse()
        except ProtocolError as exc:
            log.warning("MQTT client %s (%s): %s; closing", self.client_id or "?", self.peer, exc)
            self.abort()


@dataclass
class IngestStats:
    connections: int = 0
    refused_connections: int = 0
    refused_publishes: int = 0
    wills: int = 0
    keepalive_timeouts: int = 0
    takeovers: int = 0
    paused: int = 0


class IngestServer:
    """The endpoint: listens, speaks MQTT with the devices, hands their messages to two lanes (see the notes)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        authenticate: Authenticate = open_endpoint,
        max_inflight: int = 1000,
        max_queued_bytes: int = 64 * 1024 * 1024,
        max_packet_bytes: int = 2 * 1024 * 1024,
        reuse_port: bool = True,
        fallback_to_free_port: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.authenticate = authenticate
        self.max_inflight = max_inflight
        self.max_queued_bytes = max_queued_bytes
        self.max_packet_bytes = max_packet_bytes
        self.reuse_port = reuse_port
        self.fallback_to_free_port = fallback_to_free_port
        self.priority = MessageQueue(self, "priority")
        self.bulk = MessageQueue(self, "bulk")
        self.connections: dict[int, _Connection] = {}
        self.sessions: dict[tuple[str, str], _Connection] = {}  # (account, client id) -> its live connection
        self.persistent: set[tuple[str, str]] = set()  # sessions that asked to persist (session present)
        self._server: asyncio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._ids = 0
        self.full = False
        self.stats = IngestStats()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def next_connection_id(self) -> int:
        self._ids += 1
        return self._ids

    async def start(self) -> None:
        """Listen (idempotent); OSError naming the address if it cannot."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), self.host, self.port, reuse_port=self.reuse_port, backlog=1024
            )
        except OSError as exc:
            if not self.fallback_to_free_port or not self.port:
                raise OSError(f"the MQTT endpoint cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
            log.warning("port %d is taken; the MQTT endpoint listens on a free port instead", self.port)
            self._server = await loop.create_server(
                lambda: _Connection(self), self.host, 0, reuse_port=self.reuse_port, backlog=1024
            )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        self._watch = asyncio.create_task(self._watch_keepalives(), name="ingest:keepalive")
        log.info("MQTT endpoint listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and close every connection (idempotent). Unacknowledged messages stay with the devices."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        server.close()
        for conn in list(self.connections.values()):
            conn.closing = True  # our shutdown is no reason to publish the devices' wills
            conn.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def __aenter__(self) -> IngestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # sessions -------------------------------------------------------------------------------

    def take_session(self, conn: _Connection, clean: bool) -> bool:
        """Register a connection under (account, client id); an older one there is taken over. Returns whether a
        persistent session was there (CONNACK's session present)."""
        assert conn.account is not None
        key = (conn.account.username, conn.client_id)
        old = self.sessions.get(key)
        if old is not None and old is not conn:
            self.stats.takeovers += 1
            log.info("MQTT client %s of %s connected again: the old connection is taken over", key[1], key[0] or "-")
            old.abort()
        self.sessions[key] = conn
        self.stats.connections += 1
        present = key in self.persistent and not clean
        if clean:
            self.persistent.discard(key)
        else:
            self.persistent.add(key)
        return present

    def forget(self, conn: _Connection) -> None:
        if conn.account is not None:
            key = (conn.account.username, conn.client_id)
            if self.sessions.get(key) is conn:
                del self.sessions[key]

    # messages ---------------------------------------------------------------------------

    def deliver(
        self, conn: _Connection, topic: str, payload: bytes, *, qos: int, packet_id: int, dup: bool, will: bool = False
    ) -> None:
        """A PUBLISH (or a will) for the lanes; QoS 1/2 are tracked until the collector acknowledges them."""
        refused = None
        if conn.account is not None and not conn.account.may_publish(topic):
            refused = NOT_AUTHORIZED
            self.stats.refused_publishes += 1
        token = conn.track(qos, packet_id) if qos and not will else 0
        if will:
            self.stats.wills += 1
        m = MqttMessage(
            topic,
            bytes(payload),
            qos,
            packet_id,
            now_ms(),
            conn.id if token else 0,
            dup,
            token=token,
            refused=refused,
        )
        (self.priority if _is_priority(topic) else self.bulk).put(m)
        if not self.full and self.priority.bytes + self.bulk.bytes > self.max_queued_bytes:
            self.full = True
            self.stats.paused += 1
            log.warning("MQTT endpoint: %d bytes waiting to be stored; reading paused", self.max_queued_bytes)
            for c in self.connections.values():
                c.pause()

    def taken(self) -> None:
        """The lanes took messages: resume reading once below half the bound."""
        if self.full and self.priority.bytes + self.bulk.bytes < self.max_queued_bytes // 2:
            self.full = False
            for c in self.connections.values():
                if len(c.pending) < self.max_inflight:
                    c.resume()

    def ack(self, messages: Sequence[MqttMessage]) -> None:
        by_conn: dict[int, tuple[list[int], list[int]]] = {}
        for m in messages:
            if m.token:
                tokens, refused = by_conn.setdefault(m.connection, ([], []))
                tokens.append(m.token)
                if m.refused:
                    refused.append(m.token)
        for cid, (tokens, refused) in by_conn.items():
            conn = self.connections.get(cid)
            if conn is not None:  # gone: its client sends these again on its next connection
                conn.acked(tokens, refused)

    async def _watch_keepalives(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = asyncio.get_running_loop().time()
            for conn in list(self.connections.values()):
                if conn.keepalive_s and now - conn.last_heard > 1.5 * conn.keepalive_s and not conn.paused:
                    self.stats.keepalive_timeouts += 1
                    log.info("MQTT client %s silent past its keep-alive: closing", conn.client_id)
                    conn.abort()


def _is_priority(topic: str) -> bool:
    """Smoke and elevator events: the life-safety lane."""
    if not topic.startswith(TOPIC_PREFIX) or not topic.endswith("/event"):
        return False
    parts = topic.split("/")
    return len(parts) == 5 and parts[2] in _PRIORITY_TYPES


@dataclass
class AccountBook:
    """Broker accounts as the endpoint checks them, reloaded from the database (whistle.broker_auth)."""

    load: Callable[[], Awaitable[dict[str, tuple[str, frozenset[str] | None]]]]
    verify: Callable[[str, str], bool]
    reload_s: float = 10.0
    _accounts: dict[str, tuple[str, frozenset[str] | None]] = field(default_factory=dict)
    _loaded_at: float = float("-inf")
    _verified: dict[tuple[str, bytes], str] = field(default_factory=dict)  # (user, password) -> the hash it matched

    async def authenticate(self, client_id: str, username: str | None, password: bytes | None) -> Account | None:
        if not username or password is None:
            return None
        loop = asyncio.get_running_loop()
        if username not in self._accounts or loop.time() - self._loaded_at > self.reload_s:
            self._accounts = await self.load()
            self._loaded_at = loop.time()
        found = self._accounts.get(username)
        if found is None:
            return None
        hashed, devices = found
        key = (username, password)
        if self._verified.get(key) != hashed:
            ok = await asyncio.to_thread(self.verify, password.decode("utf-8", "replace"), hashed)
            if not ok:
                return None
            self._verified[key] = hashed
        return Account(username, devices)
