"""The pure streaming core: per-partition state, event-time clock, timers, rule dispatch. No I/O.

A `Processor` runs a set of rules over the readings of one bus partition at a time. Each
partition has a `PartitionState`: the keyed states of its rules, its event-time clock, its
pending timers and the offset of the next record. Everything a partition's results depend on
is in that object, so snapshotting it with its offset and restoring it later replays exactly.

Time. The partition clock is the largest event time seen on the partition. Rules compare
event times with it; timers fire when the watermark — the clock less `lateness_ms` (10 min),
the declared bound on how far one device's messages may trail another's — passes their due
time (offline detection, "nothing by T"): a device whose messages arrive a few minutes behind
the others (another connection, a slower gateway) is not called offline for it. A partition
that receives nothing for `idle_after_ms` of wall time while its clock is already within
`live_lag_ms` of the wall clock follows the wall clock instead (Flink's idle sources): a
stream that goes quiet live still fires its timers, but a backfill that pauses
never jumps hours ahead and raises a wave of false timeouts.

Sources. Several collectors may feed one partition (a shared subscription gives each a share of
every device's messages; several endpoints each take some gateways), and one of them can fall
behind the others by far more than the lateness: in a flat-out backfill a second of lag is many
minutes of event time. Each reading names its collector (`Reading.source`) and the partition
keeps each source's latest event time; timers fire only when the watermark of the slowest live
source passes them (Flink's watermark alignment of input channels). A source that has sent
nothing to the partition for `source_idle_ms` (a collector stopped, or with no devices of this
partition) no longer holds the others back, and takes part again with its next reading. That time is
measured on the collectors' clocks — the arrival stamps (`Reading.received_at`) of the other sources'
readings — not on the rules' own clock, so a rules process working through a backlog judges a source
exactly as it would have live (and a replay after a restore as the first run did): a collector held up
for a few seconds is a few seconds of the others' arrivals behind, however long the rules take to read
them. A partition that receives nothing at all for `idle_after_ms` is at the end of its log; there the
rules' clock stands in for the arrivals that are not coming (the collectors' clocks are assumed in step
within a second or so, as NTP keeps them). Without sources (records off the bus of an older collector)
it is the partition clock.

A source must be known to hold anything back, and a collector that has not yet delivered a reading to
a partition is known there only by its marks (`SourceMark`: a control record each collector puts on
every partition when it starts, at once when it takes messages after a pause, once a second while it
is busy, and a last one when it stops; none while it has nothing to do). Without them a collector held
up before its first reading reached a partition (stopped, or slow over its first batch) did not exist
there, and the other one's stream, hours of event time ahead, called half the building offline (the
split-deployment test's intermittent failure). A mark gives the clock the source holds the partition
at (0 before it has published anything: it holds the partition until it has) and an arrival stamp, so a
collector that marked itself lately holds the partition as one that delivered a reading then does. The
mark's clock never stamps a reading (`source_clock` stays the latest event time the source delivered to
this partition): it is the collector's newest event time anywhere, and one reading far ahead (a device's
clock, a late batch) would make every other device on every partition look late. The last mark of
a collector that stops (`idle`) takes it out of the reckoning at once, and its next reading or mark
brings it back. Marks are not readings: a partition that hears only marks is still quiet.

Late, out-of-order and duplicate input is each rule's to judge against its own state (a
register reading older than the last one carries no new consumption; an event older than the
detector's last event is history). The processor drops an exact repeat of a device event
(same `seq` and `ts`), which is what a redelivery after a restart looks like.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.config import DEFAULTS, RuleConfig, RuleParams
from rules.topology import Topology
from whistle.domain import Channel, Detection, DeviceType, Reading
from whistle.serde import SourceMark

_SOURCE_FORGOTTEN_MS = 86_400_000  # a source idle for a day is no longer one (a collector renamed, removed)

Evaluate = Callable[[Reading, Any, "RuleContext"], list[Detection] | None]
OnTimer = Callable[[str, Any, "RuleContext"], list[Detection] | None]


@dataclass(frozen=True, slots=True)
class Rule:
    """A pure rule: what it reads, how its state is keyed, and its two entry points."""

    name: str
    inputs: frozenset[tuple[DeviceType, Channel]]
    key: Callable[[Reading], str]
    new_state: Callable[[], Any]
    evaluate: Evaluate
    on_timer: OnTimer | None = None
    when: Callable[[Reading, Topology], bool] | None = None  # a filter run before any state is made


class RuleContext:
    """What a rule sees besides its state: the clock, its parameters, the registry and timers.

    In `on_timer`, `due` is the time the timer was set for, `clock` the time every live source has
    reached, `watermark` that less the lateness (every reading up to it is in), and `params` are the
    defaults: a rule keeps in its state what its timer needs to know. `source_clock` is the latest
    event time of the collector the reading came through (the partition clock when it names none):
    how far behind its own stream a reading is, whatever another collector has reached.
    """

    __slots__ = (
        "_key",
        "_part",
        "_rule",
        "_watermark_of",
        "clock",
        "due",
        "lateness",
        "params",
        "requested",
        "source_clock",
        "topology",
        "watermark",
    )

    def __init__(self, topology: Topology | None = None, params: RuleParams | None = None, clock: int = 0) -> None:
        self.clock = clock
        self.due = clock
        self.source_clock = clock
        self.lateness = 0  # the processor's declared lateness
        self.watermark = clock  # in `on_timer`: every reading up to this event time has been judged
        self.params = params if params is not None else DEFAULTS.params()
        self.topology = topology if topology is not None else Topology()
        self.requested: list[int] = []  # timers asked for while no partition is attached (a rule on its own)
        self._part: PartitionState | None = None
        self._rule = ""
        self._key = ""
        self._watermark_of: Callable[[PartitionState], int] | None = None

    def known(self) -> int:
        """The event time up to which every reading of the partition is in (the slowest live source's clock
        less the lateness; `watermark` in `on_timer`). Computed on demand: a rule asks it rarely."""
        if self._part is None or self._watermark_of is None:
            return self.watermark
        return self._watermark_of(self._part)

    def set_timer(self, due: int) -> None:
        """Call this rule's `on_timer` for this key once the clock reaches `due`."""
        part = self._part
        if part is None:
            self.requested.append(due)
            return
        part.timer_seq += 1
        heapq.heappush(part.timers, (due, part.timer_seq, self._rule, self._key))


@dataclass(slots=True)
class PartitionState:
    """Everything one partition's results depend on, snapshotted together with `offset`."""

    offset: int = 0
    clock: int = 0
    states: dict[tuple[str, str], Any] = field(default_factory=dict)
    timers: list[tuple[int, int, str, str]] = field(default_factory=list)
    timer_seq: int = 0
    last_event: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    duplicates: int = 0
    # per source: (its latest event time here, the latest arrival stamp of its readings or marks here)
    sources: dict[str, tuple[int, int]] = field(default_factory=dict)
    idle_sources: set[str] = field(default_factory=set)  # sources whose last word was an idle mark
    # per source: the clock its latest mark gave (what it holds the partition at; never a reading's stamp)
    marked: dict[str, int] = field(default_factory=dict)


class Processor:
    """Dispatches readings to rules by (device type, channel); one per lane."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        config: RuleConfig = DEFAULTS,
        topology: Topology | None = None,
        live_lag_ms: int = 3_600_000,
        idle_after_ms: int = 5_000,
        lateness_ms: int = 600_000,
        source_idle_ms: int = 30_000,
    ) -> None:
        self.rules = tuple(rules)
        self._by_input: dict[tuple[DeviceType, Channel], tuple[Rule, ...]] = {}
        for rule in self.rules:
            for inp in rule.inputs:
                self._by_input[inp] = (*self._by_input.get(inp, ()), rule)
        self._by_name = {r.name: r for r in self.rules}
        self.topology = topology if topology is not None else Topology()
        self.config = config
        self._params: dict[tuple[str | None, DeviceType], RuleParams] = {}
        self.live_lag_ms = live_lag_ms
        self.idle_after_ms = idle_after_ms
        self.lateness_ms = lateness_ms
        self.source_idle_ms = source_idle_ms
        self._ctx = RuleContext(self.topology)
        self._ctx.lateness = lateness_ms
        self._ctx._watermark_of = self.watermark

    def reconfigure(self, config: RuleConfig | None = None, topology: Topology | None = None) -> None:
        """Take a new configuration or registry view; parameters are resolved again on next use."""
        if config is not None:
            self.config = config
        if topology is not None:
            self.topology = topology
            self._ctx.topology = topology
        self._params.clear()

    def params(self, grid_id: str | None, device_type: DeviceType) -> RuleParams:
        """The parameters for a device type in a grid (cached)."""
        key = (grid_id, device_type)
        p = self._params.get(key)
        if p is None:
            topo = self.topology
            p = self._params[key] = self.config.params(
                street=topo.street(grid_id), grids=topo.lineage(grid_id), device_type=device_type
            )
        return p

    def process(self, part: PartitionState, r: Reading, out: list[Detection]) -> None:
        """Run the rules that read `r`, then any timers its event time makes due."""
        if r.channel is Channel.EVENT:
            mark = (r.seq, r.ts)
            if r.seq is not None and part.last_event.get(r.device_id) == mark:
                part.duplicates += 1
                return
            part.last_event[r.device_id] = mark
        part.clock = max(part.clock, r.ts)
        src = r.source
        source_clock = part.clock
        if src is not None:
            seen = part.sources.get(src)
            if seen is None:
                part.sources[src] = (r.ts, r.received_at)
                source_clock = r.ts
            else:
                source_clock = r.ts if r.ts > seen[0] else seen[0]
                part.sources[src] = (source_clock, r.received_at if r.received_at > seen[1] else seen[1])
            if part.idle_sources:
                part.idle_sources.discard(src)  # it delivers again
        rules = self._by_input.get((r.device_type, r.channel))
        if rules:
            ctx = self._ctx
            ctx.clock = part.clock
            ctx.due = part.clock
            ctx.source_clock = source_clock
            ctx.params = self.params(r.grid_id, r.device_type)
            ctx._part = part
            states = part.states
            for rule in rules:
                if rule.when is not None and not rule.when(r, self.topology):
                    continue
                key = rule.key(r)
                skey = (rule.name, key)
                st = states.get(skey)
                if st is None:
                    st = states[skey] = rule.new_state()
                ctx._rule = rule.name
                ctx._key = key
                got = rule.evaluate(r, st, ctx)
                if got:
                    out.extend(got)
        timers = part.timers
        if timers and timers[0][0] <= part.clock - self.lateness_ms and timers[0][0] <= self.watermark(part):
            self._fire(part, out)

    def watermark(self, part: PartitionState, quiet_at: int | None = None) -> int:
        """The event time up to which this partition's timers may fire: the slowest live source's, less the
        lateness. A source is live while the newest arrival stamp on the partition — or `quiet_at`, the rules'
        clock, once the partition has gone quiet at the end of its log — is within `source_idle_ms` of its
        own."""
        low = part.clock
        sources = part.sources
        if sources:
            newest = max(arrived for _, arrived in sources.values())
            if quiet_at is not None and quiet_at > newest:
                newest = quiet_at
            idle = self.source_idle_ms
            gone, marked = part.idle_sources, part.marked
            for src, (seen, arrived) in sources.items():
                ts = max(seen, marked.get(src, seen)) if marked else seen
                if ts < low and newest - arrived <= idle and src not in gone:
                    low = ts
        return low - self.lateness_ms

    def mark(self, part: PartitionState, m: SourceMark, out: list[Detection]) -> None:
        """A collector's source mark: it is there (a collector that has sent this partition nothing yet holds
        it back all the same) and how far it has published; or, `idle`, that it has stopped."""
        seen = part.sources.get(m.source)
        # The mark's clock is what the source holds the partition at, never the clock its readings here are
        # stamped with: that is the latest event time *it delivered here*. (Taken as both, the first version
        # stamped every partition's readings with the collector's newest event time anywhere, so one reading far
        # ahead on one partition made a gap for every e-bike sensor on all of them.)
        part.sources[m.source] = (0, m.at) if seen is None else (seen[0], max(seen[1], m.at))
        part.marked[m.source] = max(part.marked.get(m.source, 0), m.clock)
        if m.idle:
            part.idle_sources.add(m.source)
        else:
            part.idle_sources.discard(m.source)
        self.release(part, out)

    def release(self, part: PartitionState, out: list[Detection], quiet_at: int | None = None) -> None:
        """Fire the timers a source gone idle was holding back (called every round, records or not;
        `quiet_at`: the rules' clock, when the partition has been quiet for `idle_after_ms`)."""
        if part.timers and part.timers[0][0] <= self.watermark(part, quiet_at):
            self._fire(part, out, quiet_at)

    def forget_sources(self, part: PartitionState) -> None:
        """Drop the sources quiet for a day behind the partition's newest arrival (a collector renamed or
        removed); called after a restore."""
        if part.sources:
            newest = max(arrived for _, arrived in part.sources.values())
            part.sources = {s: v for s, v in part.sources.items() if newest - v[1] <= _SOURCE_FORGOTTEN_MS}
        part.idle_sources &= part.sources.keys()
        part.marked = {s: c for s, c in part.marked.items() if s in part.sources}

    def process_many(self, part: PartitionState, readings: Iterable[Reading]) -> list[Detection]:
        out: list[Detection] = []
        for r in readings:
            self.process(part, r, out)
        return out

    def advance(self, part: PartitionState, clock: int, out: list[Detection], quiet_at: int | None = None) -> None:
        """Move the partition clock forward to `clock` (never back) and fire what is due."""
        part.clock = max(part.clock, clock)
        if part.timers and part.timers[0][0] <= part.clock:
            self._fire(part, out, quiet_at)

    def idle_clock(self, part: PartitionState, wall_ms: int, idle_ms: int) -> int | None:
        """The clock a quiet partition should follow, or None to leave it (see the module notes)."""
        if idle_ms < self.idle_after_ms or part.clock <= 0:
            return None
        if wall_ms - part.clock > self.live_lag_ms:
            return None  # a backfill paused: do not jump ahead of the data
        target = wall_ms - self.idle_after_ms
        return target if target > part.clock else None

    def _fire(self, part: PartitionState, out: list[Detection], quiet_at: int | None = None) -> None:
        ctx = self._ctx
        ctx._part = part
        timers = part.timers
        watermark = self.watermark(part, quiet_at)
        aligned = watermark + self.lateness_ms  # the time every live source has reached: a timer's "now"
        while timers and timers[0][0] <= watermark:
            due, _, name, key = heapq.heappop(timers)
            rule = self._by_name.get(name)
            if rule is None or rule.on_timer is None:
                continue  # a rule removed since the timer was set
            st = part.states.get((name, key))
            if st is None:
                continue
            ctx.clock = ctx.source_clock = aligned
            ctx.watermark = watermark
            ctx.due = due
            ctx.params = self.config.params()
            ctx._rule = name
            ctx._key = key
            got = rule.on_timer(key, st, ctx)
            if got:
                out.extend(got)
