"""The bus in PostgreSQL: a durable, ordered log the processes of one deployment share (the embedded default).

Why. The collector already commits every accepted reading to PostgreSQL. Appending the bus records in
the same transaction (`append`) makes "stored" and "on the bus" one fact: a crash before the commit
leaves the MQTT message unacknowledged (it comes again), a crash after it leaves the records in the log
for the rules to judge after a restart; nothing accepted goes unjudged and nothing is published twice.
It needs no other server, and it lets the roles run as separate processes on one machine (both cores)
with Kafka's semantics: partitions by murmur2 of the key, consumer groups, committed offsets.

Layout (migration 0007). `bus_topics` holds each topic's partition count and an epoch (a recreated
topic is another log); `bus_heads` the next offset per partition; `bus_log` one row per append and
partition with its records packed (`count` records ending at `end_offset`); `bus_offsets` the groups'
committed offsets. A writer locks the head rows it appends to (in partition order, so writers never
deadlock) until its transaction commits: offsets are gap-free and become visible in order, so a
reader that has seen offset n has seen everything before it. The commit notifies `whistle_bus` with
the topic's name, which wakes the readers at once (a fire does not wait for a poll).

Groups. A group has one active member per topic at a time: the member holds a session advisory lock
(on a connection of its own) for as long as it lives; a second member waits as a standby and takes
over within `standby_poll_s` of the first one's death (its connection closes, the lock goes). Scale
the rules out with Kafka; here the point is durability and a clean hand-over.

Trimming. `trim()` deletes what every group registered for a topic has committed, and anything older
than `retention_s` whatever the groups say (a group that stopped for good must not keep the log
forever); the registered groups are those that ever subscribed (`bus_offsets`), except groups that
have not committed for `abandon_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle.bus import Record, TopicPartition, partition_for, record_digest
from whistle.store.db import Database

log = logging.getLogger(__name__)

CHANNEL = "whistle_bus"
_LEN = struct.Struct("!I")

Conn = AsyncConnection[TupleRow]


def pack(items: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Records as one blob: per record the key's length, the key, the value's length, the value."""
    parts: list[bytes] = []
    for key, value in items:
        parts += (_LEN.pack(len(key)), key, _LEN.pack(len(value)), value)
    return b"".join(parts)


def unpack(blob: bytes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    view = memoryview(blob)
    i, n = 0, len(blob)
    while i < n:
        (k,) = _LEN.unpack_from(view, i)
        key = bytes(view[i + 4 : i + 4 + k])
        i += 4 + k
        (v,) = _LEN.unpack_from(view, i)
        value = bytes(view[i + 4 : i + 4 + v])
        i += 4 + v
        out.append((key, value))
    return out


def _lock_key(group: str, topic: str) -> int:
    """A 63-bit advisory lock id for one group's membership of one topic."""
    return zlib.crc32(f"whistle-bus|{group}".encode()) << 31 | zlib.crc32(topic.encode()) >> 1


@dataclass(frozen=True, slots=True)
class TopicInfo:
    partitions: int
    epoch: str


class PgLogBus:
    """Producer and consumer factory on the log in PostgreSQL (see the module notes)."""

    def __init__(
        self,
        db: Database,
        partitions: int,
        *,
        retention_s: float = 7 * 86_400.0,
        abandon_s: float = 3 * 86_400.0,
        standby_poll_s: float = 2.0,
        poll_s: float = 1.0,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.db = db
        self.partitions = partitions
        self.retention_s = retention_s
        self.abandon_s = abandon_s
        self.standby_poll_s = standby_poll_s
        self.poll_s = poll_s
        self._topics: dict[str, TopicInfo] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self._running = False
        self.trimmed = 0

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._listener = asyncio.create_task(self._listen(), name="bus:listen")

    async def stop(self) -> None:
        self._running = False
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for event in self._wakeups.values():
            event.set()

    async def __aenter__(self) -> PgLogBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # topics -----------------------------------------------------------------------------

    async def topic(self, name: str, conn: Conn | None = None) -> TopicInfo:
        """The topic's partition count and epoch; a new topic is created with this bus's partition count.

        The creation commits on a connection of its own (outside the pool, so a writer holding pooled
        connections never waits for one), whatever becomes of the caller's transaction."""
        info = self._topics.get(name)
        if info is not None:
            return info
        row = None
        if conn is not None:
            cur = await conn.execute("SELECT partitions, epoch FROM bus_topics WHERE topic = %s", (name,))
            row = await cur.fetchone()
        if row is None:
            async with (
                await psycopg.AsyncConnection.connect(self.db.conninfo, autocommit=True) as own,
                own.transaction(),
            ):
                await own.execute(
                    "INSERT INTO bus_topics (topic, partitions) VALUES (%s, %s) ON CONFLICT (topic) DO NOTHING",
                    (name, self.partitions),
                )
                cur = await own.execute("SELECT partitions, epoch FROM bus_topics WHERE topic = %s", (name,))
                row = await cur.fetchone()
                assert row is not None
                await own.execute(
                    "INSERT INTO bus_heads (topic, partition) SELECT %s, p FROM generate_series(0, %s - 1) p "
                    "ON CONFLICT DO NOTHING",
                    (name, row[0]),
                )
        info = self._topics[name] = TopicInfo(int(row[0]), str(row[1]))
        return info

    # producing --------------------------------------------------------------------------

    async def append(self, conn: Conn, topic: str, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Append (key, value) records inside the caller's transaction; visible when it commits."""
        info = await self.topic(topic, conn)
        by_part: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in items:
            by_part.setdefault(partition_for(key, info.partitions), []).append((key, value))
        return await self._append_parts(conn, topic, by_part)

    async def append_broadcast(self, conn: Conn, topic: str, value: bytes) -> int:
        """One record with an empty key on every partition, inside the caller's transaction."""
        info = await self.topic(topic, conn)
        return await self._append_parts(conn, topic, {p: [(b"", value)] for p in range(info.partitions)})

    async def _append_parts(self, conn: Conn, topic: str, by_part: Mapping[int, Sequence[tuple[bytes, bytes]]]) -> int:
        if not by_part:
            return 0
        parts = sorted(by_part)
        counts = [len(by_part[p]) for p in parts]
        # Lock the heads (in partition order) and move them on; the locks are held until the commit.
        cur = await conn.execute(
            "UPDATE bus_heads h SET next_offset = h.next_offset + c.n FROM "
            "(SELECT * FROM unnest(%s::int[], %s::int[]) AS x(p, n) ORDER BY p) c "
            "WHERE h.topic = %s AND h.partition = c.p RETURNING h.partition, h.next_offset",
            (parts, counts, topic),
        )
        ends = {int(p): int(end) for p, end in await cur.fetchall()}
        if len(ends) != len(parts):
            raise RuntimeError(f"bus topic {topic!r} has no head for partitions {sorted(set(parts) - set(ends))}")
        async with conn.cursor() as c:
            await c.executemany(
                "INSERT INTO bus_log (topic, partition, end_offset, count, records) VALUES (%s, %s, %s, %s, %s)",
                [(topic, p, ends[p], len(by_part[p]), pack(by_part[p])) for p in parts],
            )
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, topic))
        return sum(counts)

    async def send_many(self, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Append records in a transaction of their own; returns once it committed."""
        if not self._running:
            raise RuntimeError("bus is not running")
        batch = list(items)
        if not batch:
            return
        async with self.db.connection() as conn, conn.transaction():
            await self.append(conn, topic, batch)

    async def broadcast(self, topic: str, value: bytes) -> None:
        if not self._running:
            raise RuntimeError("bus is not running")
        async with self.db.connection() as conn, conn.transaction():
            await self.append_broadcast(conn, topic, value)

    # reading ----------------------------------------------------------------------------

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        await self.topic(tp.topic)
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT h.next_offset, (SELECT min(l.end_offset - l.count) FROM bus_log l "
                "WHERE l.topic = h.topic AND l.partition = h.partition) "
                "FROM bus_heads h WHERE h.topic = %s AND h.partition = %s",
                (tp.topic, tp.partition),
            )
            row = await cur.fetchone()
        if row is None:
            return 0, 0
        end = int(row[0])
        return (int(row[1]) if row[1] is not None else end), end

    async def fingerprint(self, tp: TopicPartition, offset: int) -> str | None:
        await self.topic(tp.topic)
        got = await self.read(tp, offset, 1)
        return self.mark(got[0]) if got and got[0].offset == offset else None

    async def partitions_of(self, topic: str) -> int:
        return (await self.topic(topic)).partitions

    def mark(self, record: Record) -> str:
        r = record
        info = self._topics.get(r.topic)
        if info is None:
            raise KeyError(f"bus topic {r.topic!r} was not opened by this bus")
        return record_digest(f"{info.epoch}/{r.topic}", r.partition, r.offset, r.timestamp, r.key, r.value)

    async def read(self, tp: TopicPartition, offset: int, max_records: int) -> list[Record]:
        """Records of one partition from `offset` on (fewer if the log holds fewer)."""
        got = await self._fetch(tp.topic, {tp.partition: offset}, max_records)
        return got.get(tp, [])

    async def _fetch(
        self, topic: str, positions: Mapping[int, int], max_records: int
    ) -> dict[TopicPartition, list[Record]]:
        if not positions:
            return {}
        parts = sorted(positions)
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT l.partition, l.end_offset, l.count, (extract(epoch FROM l.appended_at) * 1000)::bigint,"
                " l.records FROM unnest(%s::int[], %s::bigint[]) AS q(p, pos) CROSS JOIN LATERAL ("
                "  SELECT partition, end_offset, count, appended_at, records FROM bus_log"
                "  WHERE topic = %s AND partition = q.p AND end_offset > q.pos ORDER BY end_offset LIMIT %s) l"
                " ORDER BY l.partition, l.end_offset",
                (parts, [positions[p] for p in parts], topic, max(1, min(1000, max_records))),
            )
            rows = await cur.fetchall()
        per_part: dict[int, list[tuple[int, int, int, bytes]]] = {}
        for p, end, count, ts, blob in rows:
            per_part.setdefault(int(p), []).append((int(end), int(count), int(ts), bytes(blob)))
        # Round robin over the partitions, a row at a time, so one partition's backlog does not starve the others.
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records
        depth = 0
        while budget > 0:
            took = False
            for p in parts:
                chunk = per_part.get(p)
                if not chunk or depth >= len(chunk) or budget <= 0:
                    continue
                took = True
                end, count, ts, blob = chunk[depth]
                base = end - count
                tp = TopicPartition(topic, p)
                recs = out.setdefault(tp, [])
                start = positions[p]  # below the first row held: trimmed, go on from what is held
                for i, (key, value) in enumerate(unpack(blob)):
                    off = base + i
                    if off < start:
                        continue
                    if budget <= 0:
                        break
                    recs.append(Record(topic, p, off, key, value, ts))
                    budget -= 1
            if not took:
                break
            depth += 1
        return {tp: recs for tp, recs in out.items() if recs}

    def consumer(self, group: str, topics: Sequence[str]) -> PgLogConsumer:
        return PgLogConsumer(self, group, tuple(topics))

    async def end_offsets_async(self, topic: str) -> list[int]:
        """The offset the next record of each partition will get."""
        info = await self.topic(topic)
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT partition, next_offset FROM bus_heads WHERE topic = %s ORDER BY partition", (topic,)
            )
            got = {int(p): int(o) for p, o in await cur.fetchall()}
        return [got.get(p, 0) for p in range(info.partitions)]

    async def committed_async(self, group: str, tp: TopicPartition) -> int | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT next_offset FROM bus_offsets WHERE group_name = %s AND topic = %s AND partition = %s",
                (group, tp.topic, tp.partition),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else None

    # wake-ups ---------------------------------------------------------------------------

    def _event(self, topic: str) -> asyncio.Event:
        ev = self._wakeups.get(topic)
        if ev is None:
            ev = self._wakeups[topic] = asyncio.Event()
        return ev

    async def wait(self, topics: Sequence[str], timeout: float) -> None:
        """Until one of `topics` had a commit, or `timeout`."""
        events = [self._event(t) for t in topics]
        if any(e.is_set() for e in events):
            for e in events:
                e.clear()
            return
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=min(timeout, self.poll_s), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            for e in events:
                e.clear()

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnect (and wake everyone) when it breaks."""
        while self._running:
            try:
                async with await psycopg.AsyncConnection.connect(self.db.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    for ev in self._wakeups.values():
                        ev.set()  # something may have been committed while we were not listening
                    async for note in conn.notifies():
                        self._event(note.payload).set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus: LISTEN connection lost (%s); readers poll until it is back", exc)
                for ev in self._wakeups.values():
                    ev.set()
                await asyncio.sleep(1.0)

    # maintenance ------------------------------------------------------------------------

    async def trim(self) -> int:
        """Delete what every registered group has committed, and what is older than the retention."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH floor AS (SELECT topic, partition, min(next_offset) AS upto FROM bus_offsets "
                " WHERE committed_at > now() - make_interval(secs => %s) GROUP BY topic, partition) "
                "DELETE FROM bus_log l USING floor f WHERE l.topic = f.topic AND l.partition = f.partition "
                "AND l.end_offset <= f.upto",
                (self.abandon_s,),
            )
            n = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM bus_log WHERE appended_at < now() - make_interval(secs => %s)", (self.retention_s,)
            )
            n += cur.rowcount
        self.trimmed += n
        return n


class PgLogConsumer:
    """A member of a consumer group on a `PgLogBus`: one active member per group and topic (see the notes)."""

    def __init__(self, bus: PgLogBus, group: str, topics: tuple[str, ...]) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self._bus = bus
        self.group = group
        self.topics = topics
        self._positions: dict[TopicPartition, int] = {}
        self._owned: set[str] = set()
        self._lock_conn: Conn | None = None
        self._started = False
        self._last_claim = float("-inf")

    async def start(self) -> None:
        """Register the group for its topics (the log keeps what it has not committed) and try to take them."""
        if self._started:
            return
        for topic in self.topics:
            info = await self._bus.topic(topic)
            async with self._bus.db.connection() as conn:
                # a new group starts at the first record the log holds
                await conn.execute(
                    "INSERT INTO bus_offsets (group_name, topic, partition, next_offset) "
                    "SELECT %s, h.topic, h.partition, COALESCE((SELECT min(l.end_offset - l.count) FROM bus_log l"
                    " WHERE l.topic = h.topic AND l.partition = h.partition), h.next_offset) "
                    "FROM bus_heads h WHERE h.topic = %s AND h.partition < %s ON CONFLICT DO NOTHING",
                    (self.group, topic, info.partitions),
                )
        self._started = True
        await self._claim()

    async def stop(self) -> None:
        """Leave: the lock (and with it the partitions) goes to a standby member. Idempotent."""
        self._started = False
        self._positions.clear()
        self._owned.clear()
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def __aenter__(self) -> PgLogConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _claim(self) -> None:
        """Take the topics this member does not own yet, if no other member holds them."""
        self._last_claim = asyncio.get_running_loop().time()
        if self._lock_conn is not None and self._lock_conn.closed:
            self._lock_conn = None
            self._owned.clear()
            self._positions.clear()
        if self._lock_conn is None:
            self._lock_conn = await psycopg.AsyncConnection.connect(self._bus.db.conninfo, autocommit=True)
        for topic in self.topics:
            if topic in self._owned:
                continue
            cur = await self._lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(self.group, topic),))
            row = await cur.fetchone()
            if row is None or not row[0]:
                continue
            self._owned.add(topic)
            info = await self._bus.topic(topic)
            async with self._bus.db.connection() as conn:
                cur = await conn.execute(
                    "SELECT partition, next_offset FROM bus_offsets WHERE group_name = %s AND topic = %s",
                    (self.group, topic),
                )
                committed = {int(p): int(o) for p, o in await cur.fetchall()}
            for p in range(info.partitions):
                self._positions[TopicPartition(topic, p)] = committed.get(p, 0)
            log.info("bus: group %s took topic %s (%d partitions)", self.group, topic, info.partitions)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._positions:
            raise KeyError(f"{tp} is not assigned to this consumer")
        self._positions[tp] = offset

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if not self._started:
            raise RuntimeError("consumer is not started")
        loop = asyncio.get_running_loop()
        if len(self._owned) < len(self.topics) and loop.time() - self._last_claim >= self._bus.standby_poll_s:
            await self._claim()
        if self._lock_conn is None or self._lock_conn.closed:
            await self._claim()  # the lock's connection died: our membership went with it
        out = await self._collect(max_records)
        if out or timeout_ms <= 0:
            return out
        await self._bus.wait([t for t in self.topics if t in self._owned] or list(self.topics), timeout_ms / 1000)
        return await self._collect(max_records) if self._started else {}

    async def _collect(self, max_records: int) -> dict[TopicPartition, list[Record]]:
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records
        for topic in self.topics:  # in subscription order: a priority topic listed first is drained first
            if budget <= 0:
                break
            positions = {tp.partition: pos for tp, pos in self._positions.items() if tp.topic == topic}
            got = await self._bus._fetch(topic, positions, budget)
            for tp, recs in got.items():
                out[tp] = recs
                self._positions[tp] = recs[-1].offset + 1
                budget -= len(recs)
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        items = sorted(offsets.items())
        async with self._bus.db.connection() as conn:
            await conn.execute(
                "INSERT INTO bus_offsets (group_name, topic, partition, next_offset, committed_at) "
                "SELECT %s, t, p, o, now() FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS x(t, p, o) "
                "ON CONFLICT (group_name, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
                "committed_at = now()",
                (self.group, [tp.topic for tp, _ in items], [tp.partition for tp, _ in items], [o for _, o in items]),
            )
