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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rules.catalog import BULK_RULES, PRIORITY_RULES
from rules.config import ConfigWatcher
from rules.household_job import HouseholdJob
from rules.lone_elder import TAG as LONE_ELDER_TAG
from rules.processor import PartitionState, Processor, Rule
from rules.topology import Topology, load_topology
from whistle.bus import (
    TOPIC_DETECTIONS,
    TOPIC_PRIORITY,
    TOPIC_READINGS,
    Bus,
    Consumer,
    Record,
    TopicPartition,
    partition_for,
)
from whistle.domain import AlarmKind, Detection
from whistle.retry import Backoff, Stopped, until_done
from whistle.serde import SourceMark, decode_control, decode_reading, encode_detection
from whistle.store.db import Database
from whistle.store.reads import stored_meter_readings
from whistle.store.writers import insert_bus_dead_letters

log = logging.getLogger(__name__)

LONE_ELDER_RULE = AlarmKind.LONE_ELDER_INACTIVE.value
SNAPSHOT_FORMAT = 3  # 3: the lone-elder routine as signs of life per quarter hour, meters merged in time


def dump_state(part: PartitionState) -> bytes:
    """A partition's state as bytes (pickle, compressed)."""
    return zlib.compress(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL), 1)


def load_state(raw: bytes) -> PartitionState:
    state = pickle.loads(zlib.decompress(raw))  # noqa: S301 - our own snapshots, from our own database
    if not isinstance(state, PartitionState):
        raise TypeError(f"snapshot holds {type(state).__name__}, not PartitionState")
    for name, empty in (("idle_sources", set), ("marked", dict)):  # a snapshot taken before source marks
        try:
            getattr(state, name)
        except AttributeError:
            setattr(state, name, empty())
    return state


class SnapshotStore:
    """Partition snapshots in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, group: str, tp: TopicPartition) -> PartitionState | None:
        """The partition's last snapshot, or None (none yet, or one this code cannot read)."""
        got = await self.load_with_mark(group, tp)
        return got[0] if got is not None else None

    async def load_with_mark(self, group: str, tp: TopicPartition) -> tuple[PartitionState, str | None] | None:
        """The partition's last snapshot and the mark of the log record just before its offset."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT next_offset, format, state, log_mark FROM rule_snapshots WHERE group_name = %s"
                " AND topic = %s AND partition = %s",
                (group, tp.topic, tp.partition),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        offset, fmt, raw, mark = row
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
        return state, mark

    async def save(
        self,
        group: str,
        items: Sequence[tuple[TopicPartition, PartitionState, bytes]],
        marks: Mapping[TopicPartition, str | None] | None = None,
    ) -> None:
        """Write several partitions' snapshots in one transaction, each with the mark of its log position."""
        marks = marks or {}
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO rule_snapshots (group_name, topic, partition, next_offset, clock, format, keys, state,"
                " log_mark, taken_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
                " ON CONFLICT (group_name, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
                " clock = EXCLUDED.clock, format = EXCLUDED.format, keys = EXCLUDED.keys, state = EXCLUDED.state,"
                " log_mark = EXCLUDED.log_mark, taken_at = now()",
                [
                    (
                        group,
                        tp.topic,
                        tp.partition,
                        part.offset,
                        part.clock,
                        SNAPSHOT_FORMAT,
                        len(part.states),
                        raw,
                        marks.get(tp),
                    )
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
    foreign: int = 0  # snapshots dropped because their log is gone
    gaps: int = 0  # records trimmed from the log before they were judged
    poison: int = 0  # records that could not be decoded or applied (dead-lettered, skipped)
    outages: int = 0  # rounds that failed on the database or the bus and were retried
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
        self.marks: dict[int, str | None] = {}  # the mark of the last record each partition's state has seen
        self.last_record_wall: dict[int, float] = {}
        self.last_snapshot = 0.0
        self.out: list[Detection] = []  # detections of the current round, kept until they are on the bus
        self.poison: list[tuple[Record, str]] = []
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
        history_days: int = 14,
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
        self._topology_at = float("-inf")
        self.history_days = history_days
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
        """Reload the registry facts the rules use; households newly tagged `lone_elder` learn their routine
        from the readings already stored."""
        if self.db is None:
            return
        before = self.topology
        self.topology = await load_topology(self.db)
        self._topology_at = time.monotonic()
        for lane in self.lanes.values():
            lane.processor.reconfigure(topology=self.topology)
        if before.households:  # not the first load: nothing to learn at start (the snapshots have it)
            new = self.topology.tagged(LONE_ELDER_TAG) - before.tagged(LONE_ELDER_TAG)
            if new:
                await self._learn_from_history(sorted(new))

    async def _take_registry(self, version: int) -> None:
        """A registry change announced on the bus: reload before judging what follows it."""
        if version > self.topology.version:
            await self.refresh_topology()

    async def _refresh_for_unknown(self, household_id: str) -> None:
        """A reading of a household the rules have not heard of: reload (at most every 2 s) instead of judging
        it blind."""
        if time.monotonic() - self._topology_at >= 2.0:
            log.info("household %s is not in the registry view: reloading it", household_id)
            await self.refresh_topology()

    async def _learn_from_history(self, households: Sequence[str]) -> None:
        """Replay a newly tagged lone elder's last `history_days` of stored meter readings through the lone-elder
        rule, into the partition that owns the household (detections of the past are not raised)."""
        lane = self.lanes.get(TOPIC_READINGS)
        if lane is None or self.db is None:
            return
        rules = [r for r in lane.processor.rules if r.name == LONE_ELDER_RULE]
        if not rules:
            return
        replay = Processor(rules, config=self.watcher.config, topology=self.topology)
        for hid in households:
            p = partition_for(hid.encode(), await self.bus.partitions_of(lane.topic))
            part = lane.parts.get(p)
            if part is None:
                continue  # another worker owns it
            # up to this partition's event-time clock: a backfilled past season learns from its own weeks
            until = part.clock if part.clock > 0 else None
            readings = await stored_meter_readings(self.db, hid, days=self.history_days, until=until)
            scratch = PartitionState()
            for r in readings:
                replay.process(scratch, r, [])
            key = (LONE_ELDER_RULE, hid)
            if key in scratch.states and key not in part.states:
                part.states[key] = scratch.states[key]
                lane.dirty.add(p)
            log.info("lone elder %s: routine learned from %d stored readings", hid, len(readings))

    def poll_config(self) -> None:
        if self.watcher.poll():
            for lane in self.lanes.values():
                lane.processor.reconfigure(config=self.watcher.config)

    async def _restore(self, lane: Lane, consumer: Consumer, tp: TopicPartition) -> bool:
        """Take over a partition: from its snapshot when the log is still the one the snapshot indexed.

        Never seeks past a record this state has not seen: a snapshot whose log is gone (a restarted
        in-process bus, a recreated topic) is dropped and the partition is judged from the first record
        the log holds; a snapshot whose next records were trimmed away resumes at the first one held and
        says so. Returns True when the consumer was moved."""
        got = await self.snapshots.load_with_mark(lane.group, tp) if self.snapshots is not None else None
        p = tp.partition
        if got is None:
            lane.parts[p] = PartitionState(offset=-1)  # from the consumer's position (the group's commit)
            return False
        state, mark = got
        start, end = await self.bus.bounds(tp)
        same_log = state.offset <= end and (
            state.offset == 0
            or state.offset - 1 < start  # the record before it was trimmed: nothing left to compare with
            or (mark is not None and await self.bus.fingerprint(tp, state.offset - 1) == mark)
        )
        if not same_log:
            log.warning(
                "%s partition %d: the snapshot (offset %d) indexes another log (this one holds %d..%d); "
                "judging this log from its first record",
                lane.topic,
                p,
                state.offset,
                start,
                end,
            )
            lane.stats.foreign += 1
            lane.parts[p] = PartitionState(offset=start)
            consumer.seek(tp, start)
            return True
        if state.offset < start:
            log.error(
                "%s partition %d: records %d..%d were trimmed before this worker judged them; resuming at %d",
                lane.topic,
                p,
                state.offset,
                start - 1,
                start,
            )
            lane.stats.gaps += start - state.offset
            state.offset = start
        lane.processor.forget_sources(state)
        lane.parts[p] = state
        lane.marks[p] = mark
        consumer.seek(tp, state.offset)
        lane.stats.restored += 1
        lane.stats.replayed_from[p] = state.offset
        log.info("%s partition %d restored at offset %d (%d keys)", lane.topic, p, state.offset, len(state.states))
        return True

    async def _behind_is_not_quiet(self, lane: Lane, idle: dict[int, int]) -> None:
        """A partition that sent nothing this long is quiet only if its log holds nothing more for it: a worker
        behind (a loaded machine, a fetch that served other partitions first) must not take the records it has
        not read yet for silence — it would follow the wall clock past them and call their devices offline."""
        try:
            ends = await self.bus.end_offsets_async(lane.topic)
        except Exception as exc:
            log.warning("%s: end offsets not read (%s); no partition counts as quiet this round", lane.topic, exc)
            ends = None
        for p, ms in idle.items():
            if ms < lane.processor.idle_after_ms:
                continue
            offset = lane.parts[p].offset
            if ends is None or (p < len(ends) and 0 <= offset < ends[p]):
                idle[p] = 0  # records are waiting: behind, not quiet

    async def _assign(self, lane: Lane, consumer: Consumer) -> set[int]:
        """Restore newly assigned partitions from their snapshots; forget revoked ones. Returns the moved ones."""
        assigned = {tp.partition for tp in consumer.assignment() if tp.topic == lane.topic}
        for p in set(lane.parts) - assigned:
            del lane.parts[p]
            lane.dirty.discard(p)
            lane.marks.pop(p, None)
            lane.last_record_wall.pop(p, None)
        moved: set[int] = set()
        for p in sorted(assigned - set(lane.parts)):
            if await self._restore(lane, consumer, TopicPartition(lane.topic, p)):
                moved.add(p)
        return moved

    async def _snapshot(self, lane: Lane, consumer: Consumer) -> None:
        """Save the changed partitions' states with their offsets, then commit those offsets to the group.

        The group's committed offsets never run ahead of a saved state, so a worker that takes a partition
        over without a snapshot (none yet) replays everything that state had seen."""
        if not lane.dirty:
            return
        items = []
        for p in sorted(lane.dirty):
            part = lane.parts.get(p)
            if part is not None and part.offset >= 0:
                items.append((TopicPartition(lane.topic, p), part, dump_state(part)))
        if items and self.snapshots is not None:
            await self.snapshots.save(lane.group, items, {tp: lane.marks.get(tp.partition) for tp, _, _ in items})
            lane.stats.snapshots += len(items)
            lane.stats.snapshot_bytes = sum(len(raw) for _, _, raw in items)
        if items:
            await consumer.commit({tp: part.offset for tp, part, _ in items})
        lane.dirty.clear()

    async def _judge(self, lane: Lane, tp: TopicPartition, part: PartitionState, records: Sequence[Record]) -> int:
        """Run a batch of one partition through the rules; poison records are set aside. Returns records judged.

        A registry change on the way reloads the registry view before the records behind it; a failure to
        reload (the database away) raises, leaving the rest of the batch to be read again."""
        proc = lane.processor
        bulk = lane.topic == TOPIC_READINGS
        n = 0
        for rec in records:
            if rec.offset < part.offset:
                continue  # redelivered after a rebalance: already in the state
            raw = rec.value
            reading = control = None
            try:
                if raw[:1] == b"{":
                    reading = decode_reading(raw)
                else:
                    control = decode_control(raw)
                    if control is None:
                        raise ValueError("neither a reading nor a control record")
            except Exception as exc:  # a record that cannot be decoded: never a crash loop
                self._refuse(lane, tp, rec, exc)
            else:
                if isinstance(control, SourceMark):
                    proc.mark(part, control, lane.out)
                elif control is not None:
                    await self._take_registry(control.version)
                elif reading is not None:
                    hid = reading.household_id
                    if bulk and hid is not None and hid not in self.topology.households:
                        await self._refresh_for_unknown(hid)
                    try:
                        proc.process(part, reading, lane.out)
                    except Exception as exc:  # a reading no rule can apply
                        self._refuse(lane, tp, rec, exc)
                    n += 1
            part.offset = rec.offset + 1
            lane.marks[tp.partition] = self.bus.mark(rec)
        return n

    def _refuse(self, lane: Lane, tp: TopicPartition, rec: Record, exc: Exception) -> None:
        lane.poison.append((rec, f"{type(exc).__name__}: {exc}"))
        log.error("%s: record %d of partition %d refused: %s", lane.topic, rec.offset, tp.partition, exc)

    async def _drain_poison(self, lane: Lane, stop: asyncio.Event) -> None:
        if not lane.poison or self.db is None:
            lane.stats.poison += len(lane.poison)
            lane.poison.clear()
            return
        db, items = self.db, list(lane.poison)

        async def write() -> None:
            async with db.connection() as conn:
                await insert_bus_dead_letters(conn, lane.group, items)

        await until_done(f"{lane.topic}: recording {len(items)} refused records", write, stop=stop)
        lane.stats.poison += len(items)
        lane.poison.clear()

    async def _step(self, lane: Lane, consumer: Consumer, stop: asyncio.Event) -> None:
        """One round of a lane: read, judge, emit detections, advance idle clocks, snapshot when due."""
        batches = await consumer.getmany(timeout_ms=250, max_records=self.max_records)
        try:
            moved = await self._assign(lane, consumer)
        except Exception:
            for tp, records in batches.items():  # not judged: read them again next round
                with contextlib.suppress(KeyError):
                    consumer.seek(tp, records[0].offset)
            raise
        wall = time.time()
        for tp, records in batches.items():
            part = lane.parts.get(tp.partition)
            if part is None or tp.partition in moved:
                continue  # revoked, or just moved to its snapshot: read again from there
            if part.offset >= 0 and records[0].offset > part.offset:
                # The consumer's position jumped past what the state has seen (a rebalance put it back to
                # the committed offset after a restore): go back, read them again.
                consumer.seek(tp, part.offset)
                continue
            judged = await self._judge(lane, tp, part, records)
            lane.stats.evaluated += judged
            if judged:  # a partition that hears only collectors' marks is still quiet
                lane.last_record_wall[tp.partition] = wall
            lane.dirty.add(tp.partition)
        wall_ms = int(wall * 1000)
        proc = lane.processor
        # quiet since its last record, or since it was assigned (a restored partition may never hear more)
        idle = {p: int((wall - lane.last_record_wall.setdefault(p, wall)) * 1000) for p in lane.parts}
        if any(ms >= proc.idle_after_ms for ms in idle.values()):
            await self._behind_is_not_quiet(lane, idle)
        for p, part in lane.parts.items():
            idle_ms = idle[p]
            target = proc.idle_clock(part, wall_ms, idle_ms)
            quiet_at = wall_ms if idle_ms >= proc.idle_after_ms else None  # at the log's end: no arrivals coming
            before = len(lane.out)
            if target is not None:
                proc.advance(part, target, lane.out, quiet_at)
            else:
                proc.release(part, lane.out, quiet_at)  # what a source gone quiet was holding back
            if len(lane.out) > before:
                lane.dirty.add(p)
        await self._drain_poison(lane, stop)
        if lane.out:
            out = lane.out
            items = [(d.subject_id.encode(), encode_detection(d)) for d in out]
            await until_done(
                f"{lane.topic}: sending {len(out)} detections",
                lambda: self.bus.send_many(TOPIC_DETECTIONS, items),
                stop=stop,
            )
            lane.stats.detections += len(out)
            lane.out = []
        if self.snapshots is None and lane.dirty:  # no database: the group's commit is all there is
            await consumer.commit(
                {TopicPartition(lane.topic, p): lane.parts[p].offset for p in lane.dirty if lane.parts[p].offset >= 0}
            )
            lane.dirty.clear()
        if time.monotonic() - lane.last_snapshot >= self.snapshot_interval_s:
            try:
                await self._snapshot(lane, consumer)
            except Exception as exc:
                log.warning("%s: snapshot failed, kept for the next round: %s", lane.topic, exc)
            lane.last_snapshot = time.monotonic()

    async def _run_lane(self, lane: Lane, stop: asyncio.Event) -> None:
        consumer = self.bus.consumer(lane.group, [lane.topic])
        await until_done(f"{lane.topic}: joining group {lane.group}", consumer.start, stop=stop)
        lane.last_snapshot = time.monotonic()
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    await self._step(lane, consumer, stop)
                    backoff.succeeded()
                except Stopped:
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # an outage (database, bus): wait and go on with the same state
                    lane.stats.outages += 1
                    log.warning("%s lane: %s (again in %.1f s)", lane.topic, exc, backoff.delay)
                    await backoff.wait(stop)
            if not lane.out:  # detections not yet on the bus: leave the offsets where they are, to replay them
                with contextlib.suppress(Exception):
                    await self._snapshot(lane, consumer)  # a clean stop leaves nothing to replay
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
            if self.household_job is not None and time.monotonic() - last_job >= 5 and self.owns_daily_jobs():
                last_job = time.monotonic()
                self.household_job.params = self.watcher.config.params().group_rental
                try:
                    await self.household_job.tick()
                except Exception:
                    log.exception("the household job failed; it tries again shortly")
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
