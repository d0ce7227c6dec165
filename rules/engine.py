"""The rule engine: consumes readings from the bus by consumer group and runs the rules on them.

Two lanes, each its own consumer, partitions and state: the priority lane (smoke and
elevator events, keyed by building) and the bulk lane (everything else, keyed by household),
so a day's backfill of meter data never delays a fire or a trapped passenger.

Per batch a lane decodes the records, runs them through its `Processor` partition by
partition, puts the detections on the bus, and commits the offsets. Every
`snapshot_interval_s` it writes each changed partition's state to PostgreSQL together with
the offset of the next record that state has not seen (`rule_snapshots`). When a partition is
assigned to a worker (at start, or after a rebalance) the worker restores that snapshot and
seeks the consumer back to its offset, so the records after it are replayed through the very
state that existed when it was taken: nothing is missed, and the detections replayed carry
the same ids as before, which the alerts side drops. An unclean stop therefore costs a replay
of at most one snapshot interval, never a missed or a doubled alarm.

The rule configuration file is polled and reloaded when it changes; the registry view the
rules use (household tags, grid tree) is refreshed every `topology_refresh_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rules.catalog import BULK_RULES, PRIORITY_RULES
from rules.config import ConfigWatcher
from rules.household_job import HouseholdJob
from rules.processor import PartitionState, Processor, Rule
from rules.topology import Topology, load_topology
from whistle.bus import TOPIC_DETECTIONS, TOPIC_PRIORITY, TOPIC_READINGS, Bus, Consumer, TopicPartition
from whistle.domain import Detection
from whistle.serde import decode_reading, encode_detection
from whistle.store.db import Database

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 2  # 2: the lone-elder routine, the continuous-flow spans and the e-bike floor (2026-11-24)


def dump_state(part: PartitionState) -> bytes:
    """A partition's state as bytes (pickle, compressed)."""
    return zlib.compress(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL), 1)


def load_state(raw: bytes) -> PartitionState:
    state = pickle.loads(zlib.decompress(raw))  # noqa: S301 - our own snapshots, from our own database
    if not isinstance(state, PartitionState):
        raise TypeError(f"snapshot holds {type(state).__name__}, not PartitionState")
    return state


class SnapshotStore:
    """Partition snapshots in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, group: str, tp: TopicPartition) -> PartitionState | None:
        """The partition's last snapshot, or None (none yet, or one this code cannot read)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT next_offset, format, state FROM rule_snapshots WHERE group_name = %s AND topic = %s"
                " AND partition = %s",
                (group, tp.topic, tp.partition),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        offset, fmt, raw = row
        if fmt != SNAPSHOT_FORMAT:
            log.error(
                "snapshot of %s %s has format %s, this code reads %s: starting empty", group, tp, fmt, SNAPSHOT_FORMAT
            )
            return None
        try:
            state = load_state(bytes(raw))
        except Exception:
            log.exception("snapshot of %s %s cannot be read: starting empty", group, tp)
            return None
        state.offset = int(offset)
        return state

    async def save(self, group: str, items: Sequence[tuple[TopicPartition, PartitionState, bytes]]) -> None:
        """Write several partitions' snapshots in one transaction."""
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO rule_snapshots (group_name, topic, partition, next_offset, clock, format, keys, state,"
                " taken_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())"
                " ON CONFLICT (group_name, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
                " clock = EXCLUDED.clock, format = EXCLUDED.format, keys = EXCLUDED.keys, state = EXCLUDED.state,"
                " taken_at = now()",
                [
                    (group, tp.topic, tp.partition, part.offset, part.clock, SNAPSHOT_FORMAT, len(part.states), raw)
                    for tp, part, raw in items
                ],
            )


@dataclass(slots=True)
class LaneStats:
    evaluated: int = 0
    detections: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0
    restored: int = 0
    replayed_from: dict[int, int] = field(default_factory=dict)


class Lane:
    """One topic's consumer, processor and partition states."""

    def __init__(
        self, topic: str, group: str, rules: Sequence[Rule], watcher: ConfigWatcher, topology: Topology
    ) -> None:
        self.topic = topic
        self.group = group
        self.processor = Processor(rules, config=watcher.config, topology=topology)
        self.parts: dict[int, PartitionState] = {}
        self.dirty: set[int] = set()
        self.last_record_wall: dict[int, float] = {}
        self.stats = LaneStats()


class RuleEngine:
    """Runs the priority and bulk lanes until stopped."""

    def __init__(
        self,
        bus: Bus,
        db: Database | None = None,
        *,
        group: str = "whistle-rules",
        rules_file: Path | None = None,
        max_records: int = 5000,
        snapshot_interval_s: float = 5.0,
        topology_refresh_s: float = 60.0,
        lanes: dict[str, Sequence[Rule]] | None = None,
        daily_jobs: bool = True,
    ) -> None:
        self.bus = bus
        self.db = db
        self.snapshots = SnapshotStore(db) if db is not None else None
        self.group = group
        self.max_records = max_records
        self.snapshot_interval_s = snapshot_interval_s
        self.topology_refresh_s = topology_refresh_s
        self.watcher = ConfigWatcher(rules_file)
        self.topology = Topology()
        spec = lanes if lanes is not None else {TOPIC_PRIORITY: PRIORITY_RULES, TOPIC_READINGS: BULK_RULES}
        self.household_job = (
            HouseholdJob(db, bus, self.watcher.config.params().group_rental) if db is not None and daily_jobs else None
        )
        # One consumer group per lane: a rebalance of the bulk lane never pauses the priority lane.
        self.lanes = {
            topic: Lane(topic, f"{group}.{topic}", rules, self.watcher, self.topology) for topic, rules in spec.items()
        }

    @property
    def evaluated(self) -> int:
        return sum(lane.stats.evaluated for lane in self.lanes.values())

    @property
    def detections(self) -> int:
        return sum(lane.stats.detections for lane in self.lanes.values())

    async def refresh_topology(self) -> None:
        """Reload the registry facts the rules use."""
        if self.db is None:
            return
        self.topology = await load_topology(self.db)
        for lane in self.lanes.values():
            lane.processor.reconfigure(topology=self.topology)

    def poll_config(self) -> None:
        if self.watcher.poll():
            for lane in self.lanes.values():
                lane.processor.reconfigure(config=self.watcher.config)

    async def _assign(self, lane: Lane, consumer: Consumer) -> set[int]:
        """Restore newly assigned partitions from their snapshots; forget revoked ones. Returns restored ones."""
        assigned = {tp.partition for tp in consumer.assignment() if tp.topic == lane.topic}
        for p in set(lane.parts) - assigned:
            del lane.parts[p]
            lane.dirty.discard(p)
        restored: set[int] = set()
        for p in assigned - set(lane.parts):
            tp = TopicPartition(lane.topic, p)
            state = await self.snapshots.load(lane.group, tp) if self.snapshots is not None else None
            if state is None:
                lane.parts[p] = PartitionState(offset=-1)  # from the consumer's position
                continue
            lane.parts[p] = state
            consumer.seek(tp, state.offset)
            lane.stats.restored += 1
            lane.stats.replayed_from[p] = state.offset
            restored.add(p)
            log.info("%s partition %d restored at offset %d (%d keys)", lane.topic, p, state.offset, len(state.states))
        return restored

    async def _snapshot(self, lane: Lane) -> None:
        if self.snapshots is None or not lane.dirty:
            return
        items = []
        for p in sorted(lane.dirty):
            part = lane.parts.get(p)
            if part is not None and part.offset >= 0:
                items.append((TopicPartition(lane.topic, p), part, dump_state(part)))
        if items:
            await self.snapshots.save(lane.group, items)
            lane.stats.snapshots += len(items)
            lane.stats.snapshot_bytes = sum(len(raw) for _, _, raw in items)
        lane.dirty.clear()

    async def _run_lane(self, lane: Lane, stop: asyncio.Event) -> None:
        consumer = self.bus.consumer(lane.group, [lane.topic])
        await consumer.start()
        last_snapshot = time.monotonic()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=250, max_records=self.max_records)
                restored = await self._assign(lane, consumer)
                out: list[Detection] = []
                offsets: dict[TopicPartition, int] = {}
                wall = time.time()
                proc = lane.processor
                for tp, records in batches.items():
                    part = lane.parts.get(tp.partition)
                    if part is None or tp.partition in restored:
                        continue  # revoked, or just rewound to its snapshot: read again from there
                    if part.offset >= 0 and records[0].offset > part.offset:
                        # The consumer's position jumped past what the state has seen (a rebalance put it
                        # back to the committed offset after a restore): go back, read them again.
                        consumer.seek(tp, part.offset)
                        continue
                    n = 0
                    for rec in records:
                        if rec.offset < part.offset:
                            continue  # redelivered after a rebalance: already in the state
                        proc.process(part, decode_reading(rec.value), out)
                        part.offset = rec.offset + 1
                        n += 1
                    lane.stats.evaluated += n
                    lane.last_record_wall[tp.partition] = wall
                    lane.dirty.add(tp.partition)
                    offsets[tp] = part.offset
                wall_ms = int(wall * 1000)
                for p, part in lane.parts.items():
                    idle_ms = int((wall - lane.last_record_wall.get(p, wall)) * 1000)
                    target = proc.idle_clock(part, wall_ms, idle_ms)
                    if target is not None:
                        before = len(out)
                        proc.advance(part, target, out)
                        if len(out) > before:
                            lane.dirty.add(p)
                if out:
                    await self.bus.send_many(
                        TOPIC_DETECTIONS, [(d.subject_id.encode(), encode_detection(d)) for d in out]
                    )
                    lane.stats.detections += len(out)
                if offsets:
                    await consumer.commit(offsets)
                if time.monotonic() - last_snapshot >= self.snapshot_interval_s:
                    await self._snapshot(lane)
                    last_snapshot = time.monotonic()
            await self._snapshot(lane)  # a clean stop leaves nothing to replay
        finally:
            await consumer.stop()

    def owns_daily_jobs(self) -> bool:
        """The worker holding partition 0 of the bulk lane runs the daily household job (one per group)."""
        lane = self.lanes.get(TOPIC_READINGS)
        return lane is not None and 0 in lane.parts

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        last_topology = time.monotonic()
        last_job = float("-inf")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            self.poll_config()
            if self.household_job is not None and time.monotonic() - last_job >= 300 and self.owns_daily_jobs():
                last_job = time.monotonic()
                self.household_job.params = self.watcher.config.params().group_rental
                try:
                    await self.household_job.tick()
                except Exception:
                    log.exception("the daily household job failed; it runs again in 5 minutes")
            if time.monotonic() - last_topology >= self.topology_refresh_s:
                try:
                    await self.refresh_topology()
                except Exception:
                    log.exception("refreshing the registry view failed; keeping the previous one")
                last_topology = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        await self.refresh_topology()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._housekeeping(stop), name="rules:housekeeping")
            for lane in self.lanes.values():
                tg.create_task(self._run_lane(lane, stop), name=f"rules:{lane.topic}")
