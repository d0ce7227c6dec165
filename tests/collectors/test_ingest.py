"""The embedded MQTT endpoint against real clients and a real PostgreSQL: acknowledged only once stored."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collectors.codecs import Limits
from collectors.ingest import Account, IngestServer
from collectors.service import Collector, endpoint_lanes
from tests.conftest import pg_state_dir
from tests.helpers import small_registry, wait_for
from whistle.bus import MemoryBus
from whistle.registry import DeviceDirectory, import_registry, parse_registry
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres
from whistle.timeutil import now_ms


@dataclass
class Running:
    server: IngestServer
    collector: Collector
    stop: asyncio.Event
    task: asyncio.Task[None]


@asynccontextmanager
async def endpoint(db: Database, **kw: object) -> AsyncIterator[Running]:
    await import_registry(db, parse_registry(small_registry()))
    server = IngestServer("127.0.0.1", 0, **kw)  # type: ignore[arg-type]
    async with MemoryBus(partitions=4) as bus:
        collector = Collector(
            lanes=endpoint_lanes(server, linger_ms=5), db=db, bus=bus, directory=DeviceDirectory(db), limits=Limits()
        )
        await collector.start()
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        try:
            yield Running(server, collector, stop, task)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await collector.stop()


class Client:
    """paho on its own thread, counting PUBACKs."""

    def __init__(
        self, port: int, client_id: str, *, v5: bool = False, user: str | None = None, password: str = ""
    ) -> None:
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.acked: list[int] = []
        self.reasons: list[object] = []
        self.connack: list[object] = []
        self.connected = threading.Event()

        def on_connect(c: mqtt.Client, u: object, f: object, rc: object, p: object = None) -> None:
            self.connack.append(rc)
            self.connected.set()

        def on_publish(c: mqtt.Client, u: object, mid: int, rc: object, p: object) -> None:
            self.acked.append(mid)
            self.reasons.append(rc)

        self.c.on_connect = on_connect
        self.c.on_publish = on_publish
        self.port = port

    def start(self, *, will: tuple[str, bytes] | None = None, keepalive: int = 30) -> None:
        if will is not None:
            self.c.will_set(will[0], will[1], qos=1)
        self.c.connect("127.0.0.1", self.port, keepalive=keepalive)
        self.c.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def publish(self, topic: str, payload: dict[str, object]) -> int:
        return int(self.c.publish(topic, json.dumps(payload), qos=1).mid)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def raw_connect(
    port: int, client_id: str, *, keepalive: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare MQTT 3.1.1 CONNECT with a will on WM-000001's status channel; the CONNACK is checked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    will_topic, will = b"whistle/v1/water/WM-000001/status", b'{"online": false}'
    cid = client_id.encode()
    body = (
        b"\x00\x04MQTT\x04"
        + bytes((0x04 | 0x02,))  # will, clean session
        + struct.pack("!H", keepalive)
        + struct.pack("!H", len(cid))
        + cid
        + struct.pack("!H", len(will_topic))
        + will_topic
        + struct.pack("!H", len(will))
        + will
    )
    writer.write(b"\x10" + bytes((len(body),)) + body)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"\x20\x02\x00\x00"  # CONNACK accepted
    return reader, writer


async def readings(db: Database) -> int:
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM readings")).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def private_pg() -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL of the test's own, to stop and start again."""
    with pg_state_dir("ingest") as state:
        pg = EmbeddedPostgres(state, database="ingest")
        url = pg.start()
        yield pg, url
        pg.stop()


async def test_a_message_is_acknowledged_only_once_stored_even_across_a_database_outage(
    private_pg: tuple[EmbeddedPostgres, str],
) -> None:
    pg, url = private_pg
    db = Database(url, max_size=2)
    await db.start()
    try:
        async with endpoint(db) as ep:
            client = Client(ep.server.port, f"meter-{uuid.uuid4().hex[:6]}")
            await asyncio.to_thread(client.start)
            try:
                await asyncio.to_thread(pg.stop)  # the database goes away
                ts = now_ms() - 60_000
                mids = [
                    client.publish("whistle/v1/water/WM-000001/data", {"ts": ts + i, "seq": i, "total_m3": 1.0})
                    for i in range(20)
                ]
                await asyncio.sleep(4.0)
                assert client.acked == [], "acknowledged while nothing could be stored"
                await asyncio.to_thread(pg.start)  # and comes back

                async def acked() -> bool:
                    return sorted(client.acked) == sorted(mids)

                await wait_for(acked, timeout=60, interval=0.2)
                assert client.acked == mids  # in the order they were published
                assert await readings(db) == 20
            finally:
                client.close()
    finally:
        await db.stop()


async def test_acknowledgements_keep_each_connections_order_across_the_two_lanes(db: Database) -> None:
    async with endpoint(db) as ep:
        client = Client(ep.server.port, "gateway-1")
        await asyncio.to_thread(client.start)
        try:
            ts = now_ms() - 1000
            mids = [
                client.publish("whistle/v1/water/WM-000001/data", {"ts": ts + i, "seq": i, "total_m3": 1.0})
                for i in range(200)
            ]
            mids.append(client.publish("whistle/v1/smoke/SM-0001/event", {"ts": ts, "seq": 1, "event": "alarm"}))
            mids += [
                client.publish("whistle/v1/water/WM-000001/data", {"ts": ts + 500 + i, "seq": 500 + i, "total_m3": 1.0})
                for i in range(50)
            ]

            async def all_acked() -> bool:
                return len(client.acked) == len(mids)

            await wait_for(all_acked, timeout=30)
        finally:
            client.close()
    assert client.acked == mids


async def test_a_will_is_taken_as_the_devices_message_when_its_connection_breaks(db: Database) -> None:
    async with endpoint(db) as ep:
        _reader, writer = await raw_connect(ep.server.port, "will-1", keepalive=30)
        writer.close()  # no DISCONNECT: the device dropped off

        async def stored() -> int:
            async with db.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM readings WHERE device_id = 'WM-000001' AND channel = 'status'"
                    " AND payload->>'online' = 'false'"
                )
                row = await cur.fetchone()
            return int(row[0]) if row else 0

        assert await wait_for(stored, timeout=15) == 1
        assert ep.server.stats.wills == 1


async def test_subscribing_is_refused_and_mqtt_5_clients_publish(db: Database) -> None:
    async with endpoint(db) as ep:
        granted: list[object] = []
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="listener", protocol=mqtt.MQTTv311)
        got = threading.Event()
        sub.on_subscribe = lambda c, u, mid, rcs, p: (granted.extend(rcs), got.set())
        sub.connect("127.0.0.1", ep.server.port)
        sub.loop_start()
        sub.subscribe("whistle/v1/#", qos=1)
        assert await asyncio.to_thread(got.wait, 10)
        sub.disconnect()
        sub.loop_stop()
        assert [str(rc) for rc in granted] == ["Unspecified error"]  # 0x80: this is not a broker

        v5 = Client(ep.server.port, "v5-meter", v5=True)
        await asyncio.to_thread(v5.start)
        try:
            mid = v5.publish("whistle/v1/water/WM-000001/data", {"ts": now_ms() - 1000, "seq": 9, "total_m3": 2.0})

            async def acked() -> bool:
                return v5.acked == [mid]

            await wait_for(acked, timeout=15)
        finally:
            v5.close()
    assert await readings(db) == 1


async def test_accounts_are_checked_and_a_device_may_publish_only_as_itself(db: Database) -> None:
    async def accounts(client_id: str, username: str | None, password: bytes | None) -> Account | None:
        if username == "WM-000001" and password == b"right-password":
            return Account(username, frozenset({"WM-000001"}))
        return None

    async with endpoint(db, authenticate=accounts) as ep:
        stranger = Client(ep.server.port, "x", user="WM-000001", password="wrong")
        await asyncio.to_thread(stranger.start)
        stranger.close()
        assert [str(rc) for rc in stranger.connack] == ["Bad user name or password"]

        meter = Client(ep.server.port, "WM-000001", v5=True, user="WM-000001", password="right-password")
        await asyncio.to_thread(meter.start)
        try:
            ts = now_ms() - 1000
            own = meter.publish("whistle/v1/water/WM-000001/data", {"ts": ts, "seq": 1, "total_m3": 1.0})
            spoof = meter.publish("whistle/v1/smoke/SM-0001/event", {"ts": ts, "seq": 1, "event": "tamper"})

            async def both() -> bool:
                return len(meter.acked) == 2

            await wait_for(both, timeout=15)
            reasons = dict(zip(meter.acked, [str(r) for r in meter.reasons], strict=True))
        finally:
            meter.close()
        assert reasons[own] == "Success" and reasons[spoof] == "Not authorized"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT reason, topic FROM dead_letters")
        assert await cur.fetchall() == [("not_authorized", "whistle/v1/smoke/SM-0001/event")]
        cur = await conn.execute("SELECT count(*) FROM readings WHERE device_id = 'SM-0001'")
        assert await cur.fetchone() == (0,)


async def test_a_client_silent_past_its_keepalive_is_closed_and_its_will_taken(db: Database) -> None:
    async with endpoint(db) as ep:
        _reader, writer = await raw_connect(ep.server.port, "quiet1", keepalive=1)  # keep-alive 1 s
        t0 = time.monotonic()

        async def closed() -> bool:
            return ep.server.stats.keepalive_timeouts == 1

        await wait_for(closed, timeout=10)
        assert time.monotonic() - t0 >= 1.4
        writer.close()

        async def will_stored() -> bool:
            return ep.server.stats.wills == 1 and await readings(db) == 1

        await wait_for(will_stored, timeout=10)


async def test_a_connection_with_too_many_unacknowledged_messages_is_not_read_further(
    private_pg: tuple[EmbeddedPostgres, str],
) -> None:
    pg, url = private_pg
    db = Database(url, max_size=2)
    await db.start()
    try:
        async with endpoint(db, max_inflight=50) as ep:
            client = Client(ep.server.port, "flood")
            client.c.max_inflight_messages_set(0)  # the client would send everything at once
            await asyncio.to_thread(client.start)
            try:
                await asyncio.to_thread(pg.stop)
                ts = now_ms() - 60_000
                for i in range(2000):
                    client.publish("whistle/v1/water/WM-000001/data", {"ts": ts + i, "seq": i, "total_m3": 1.0})
                await asyncio.sleep(3.0)
                held = ep.server.priority.bytes + ep.server.bulk.bytes
                conn = next(iter(ep.server.connections.values()))
                assert conn.paused and len(conn.pending) <= 50 + 10, len(conn.pending)
                assert held < 60 * 200, held  # the rest waits in the socket and with the client
                await asyncio.to_thread(pg.start)

                async def all_stored() -> bool:
                    return len(client.acked) == 2000

                await wait_for(all_stored, timeout=120, interval=0.5)
            finally:
                client.close()
        assert await readings(db) == 2000
    finally:
        await db.stop()


class _Transport(asyncio.Transport):
    """Records pause/resume and writes (a connection's side of the socket, nothing sent anywhere)."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.written: list[bytes] = []

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False


async def test_a_full_connection_is_read_again_as_soon_as_acknowledgements_open_its_window() -> None:
    # A client keeps at most its window of unacknowledged messages (here the endpoint's Receive Maximum, 50):
    # once the endpoint has them all it stops reading; every acknowledgement lets the client send one more,
    # so reading must resume as soon as the count falls below the window. Resuming only below half of it made
    # the effective window of a client that sends at once half the one it was given: at the line rate the
    # bench's publisher (4 connections x 1,000) waited with half its window unused (docs/BENCHMARKS.md).
    from collectors.ingest import _Connection

    server = IngestServer(max_inflight=50)
    conn = _Connection(server)
    transport = _Transport()
    conn.connection_made(transport)
    conn.version = 4
    tokens = [conn.track(1, i + 1) for i in range(50)]
    assert conn.paused and not transport.reading
    conn.acked(tokens[:10])  # one batch committed: ten acknowledged
    assert len(conn.pending) == 40
    assert not conn.paused and transport.reading
    assert len(transport.written) == 1  # the ten PUBACKs in one write
