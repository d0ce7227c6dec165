"""Source watermarks: several collectors feed one partition, and one of them falls behind."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

from rules.catalog import BULK_RULES
from rules.engine import dump_state, load_state
from rules.processor import PartitionState, Processor
from tests.rules.support import HOUR, MIN, T0, reading
from whistle.domain import AlarmKind, Channel, Detection, DeviceType, Reading
from whistle.serde import SourceMark, decode_control, decode_reading, encode_reading, encode_source_mark

BACKFILL_AT = T0 + 30 * 24 * HOUR  # a backfill arrives days after its event times, all within seconds


def water(device: str, ts: int, source: str | None, arrived: int = BACKFILL_AT) -> Reading:
    r = reading(device, DeviceType.WATER, Channel.DATA, ts, {"total_m3": 1.0}, household="RJ-H1", received_at=arrived)
    return dataclasses.replace(r, source=source)


def offline(out: list[Detection]) -> list[tuple[str, str, int]]:
    return [(d.subject_id, d.action.value, d.ts) for d in out if d.kind is AlarmKind.DEVICE_OFFLINE]


def through(source: str, devices: tuple[str, ...], hours: int, stop_at: int | None = None) -> Iterator[Reading]:
    """`devices` reading every 15 min for `hours`, published by collector `source` (each up to `stop_at`)."""
    for i in range(hours * 4):
        ts = T0 + i * 15 * MIN
        for d in devices:
            if stop_at is None or ts < stop_at:
                yield water(d, ts, source)


def run(proc: Processor, readings: list[Reading]) -> list[tuple[str, str, int]]:
    part, out = PartitionState(), []
    for r in readings:
        proc.process(part, r, out)
    return offline(out)


def stalled(ahead: list[Reading], behind: list[Reading], at: int) -> list[Reading]:
    """Both collectors in step until `at`, then `behind` stalls while `ahead` runs to its end, then catches up
    (a flat-out backfill through two collectors, one of them held up for a few seconds)."""
    both = sorted(ahead + behind, key=lambda r: r.ts)
    return [r for r in both if r.ts < at] + [r for r in ahead if r.ts >= at] + [r for r in behind if r.ts >= at]


def test_a_collector_running_hours_ahead_of_another_calls_no_device_offline() -> None:
    ahead = list(through("collector-1", ("WM-1", "WM-2"), 6))
    behind = list(through("collector-2", ("WM-3", "WM-4"), 6))
    assert run(Processor(BULK_RULES), sorted(ahead + behind, key=lambda r: r.ts)) == []
    assert run(Processor(BULK_RULES), stalled(ahead, behind, T0 + 2 * HOUR)) == []
    # without the sources that is a wave of false offline alarms: what a split deployment raised
    unnamed = [dataclasses.replace(r, source=None) for r in stalled(ahead, behind, T0 + 2 * HOUR)]
    assert {d for d, action, _ in run(Processor(BULK_RULES), unnamed) if action == "raise"} == {"WM-3", "WM-4"}


def test_a_device_that_stops_behind_a_slower_collector_is_still_found() -> None:
    stop = T0 + 3 * HOUR
    ahead = list(through("collector-1", ("WM-1",), 8))
    behind = [r for r in through("collector-2", ("WM-3", "WM-4"), 8) if r.device_id == "WM-3" or r.ts < stop]
    got = run(Processor(BULK_RULES), stalled(ahead, behind, T0 + 2 * HOUR))
    assert got == [("WM-4", "raise", stop - 15 * MIN + 45 * MIN)]
    assert got == run(Processor(BULK_RULES), sorted(ahead + behind, key=lambda r: r.ts))


def held_up(proc: Processor, part: PartitionState, out: list[Detection], arrivals: list[int]) -> None:
    """collector-2's last reading (WM-9 at T0, arrived at 0), then collector-1's readings of WM-1 every quarter
    hour of event time, arriving at the given times (a backfill: hours of event time in seconds)."""
    proc.process(part, water("WM-9", T0, "collector-2", arrived=0), out)
    for i, arrived in enumerate(arrivals):
        proc.process(part, water("WM-1", T0 + i * 15 * MIN, "collector-1", arrived=arrived), out)


def test_a_collector_gone_quiet_holds_the_others_back_for_source_idle_ms_of_their_arrivals() -> None:
    proc = Processor(BULK_RULES, source_idle_ms=10_000)
    part, out = PartitionState(), []
    held_up(proc, part, out, [i * 500 for i in range(16)])  # four hours of event time arriving within 7.5 s
    assert offline(out) == []  # held: collector-2 may still be sending WM-9's next readings
    proc.process(part, water("WM-1", T0 + 4 * HOUR, "collector-1", arrived=10_000), out)
    assert offline(out) == []
    # collector-1's readings now arrive more than source_idle_ms after collector-2's last: no longer waited for
    proc.process(part, water("WM-1", T0 + 4 * HOUR + 15 * MIN, "collector-1", arrived=10_001), out)
    assert offline(out) == [("WM-9", "raise", T0 + 45 * MIN)]
    proc.process(part, water("WM-9", T0 + 4 * HOUR, "collector-2", arrived=10_500), out)  # back: takes part again
    assert offline(out)[-1] == ("WM-9", "clear", T0 + 4 * HOUR)
    assert part.sources["collector-2"] == (T0 + 4 * HOUR, 10_500)


def test_however_long_the_rules_take_to_read_a_backlog_a_source_held_up_for_seconds_is_waited_for() -> None:
    # The rules' own clock plays no part while records come: a rules process minutes behind judges the
    # backlog as it would have judged it live (before, a split deployment under load called the held-up
    # collector's devices offline: its readings were more than 10 s of the rules' reading time apart).
    proc = Processor(BULK_RULES, source_idle_ms=10_000)
    part, out = PartitionState(), []
    held_up(proc, part, out, [4_000 + i * 10 for i in range(16)])  # collector-2 held up 4 s
    proc.release(part, out)  # a round with no records, not yet quiet for idle_after_ms
    assert offline(out) == []
    proc.process(part, water("WM-9", T0 + 15 * MIN, "collector-2", arrived=4_500), out)
    assert offline(out) == []


def test_a_partition_quiet_at_the_end_of_its_log_stops_waiting_by_the_rules_clock() -> None:
    proc = Processor(BULK_RULES, source_idle_ms=10_000)
    part, out = PartitionState(), []
    held_up(proc, part, out, [i * 10 for i in range(16)])
    proc.release(part, out, quiet_at=9_000)
    assert offline(out) == []
    proc.release(part, out, quiet_at=11_000)  # nothing from collector-2 for 11 s, and nothing else coming
    assert offline(out) == [("WM-9", "raise", T0 + 45 * MIN)]


def test_sources_survive_a_snapshot_and_a_replay_judges_them_as_the_first_run() -> None:
    proc = Processor(BULK_RULES, source_idle_ms=10_000)
    part, out = PartitionState(), []
    held_up(proc, part, out, [i * 500 for i in range(8)])
    back = load_state(dump_state(part))
    assert back.sources == part.sources == {"collector-2": (T0, 0), "collector-1": (T0 + 105 * MIN, 3_500)}
    proc.forget_sources(back)
    assert back.sources == part.sources  # a restore hours later changes nothing: the stamps are the input's
    rest = [water("WM-1", T0 + i * 15 * MIN, "collector-1", arrived=i * 500) for i in range(8, 24)]
    first = proc.process_many(part, rest)
    assert offline(first) == offline(proc.process_many(back, rest)) == [("WM-9", "raise", T0 + 45 * MIN)]
    proc.process(back, water("WM-1", T0 + 30 * HOUR, "collector-1", arrived=2 * 86_400_000), out)
    proc.forget_sources(back)
    assert set(back.sources) == {"collector-1"}  # collector-2 quiet for a day of arrivals: forgotten


def test_the_bus_record_names_its_collector() -> None:
    r = water("WM-1", T0, None)
    assert decode_reading(encode_reading(r, "collector-2")).source == "collector-2"
    assert b'"s"' not in encode_reading(r)
    assert decode_reading(encode_reading(r)).source is None


def test_a_device_whose_messages_are_shared_between_collectors_is_not_offline_when_one_falls_behind() -> None:
    # a shared subscription hands each message to one collector or the other, whatever its device
    rng = random.Random(5)
    devices = tuple(f"WM-{i}" for i in range(8))
    readings = [dataclasses.replace(r, source=rng.choice(("c-1", "c-2"))) for r in through("x", devices, 8)]
    ahead = [r for r in readings if r.source == "c-1"]
    behind = [r for r in readings if r.source == "c-2"]
    assert run(Processor(BULK_RULES), readings) == []
    # the older readings coming late through the slow collector must not bring a deadline forward
    assert run(Processor(BULK_RULES), stalled(ahead, behind, T0 + 2 * HOUR)) == []


def test_a_collector_known_only_by_its_mark_holds_the_partition_back() -> None:
    """collector-2 has marked itself (it started, it holds messages) but delivered nothing to this partition
    yet, while collector-1 runs hours ahead: nothing may be called offline until collector-2's readings come
    (before marks it did not exist here; the split-deployment test's wave of false offline alarms)."""
    proc = Processor(BULK_RULES)
    # a shared subscription: WM-3's messages alternate between the collectors, but from 2 h to 3 h the broker
    # hands them all to collector-2
    shared = [
        water("WM-3", T0 + i * 15 * MIN, "collector-2" if i % 2 or 8 <= i < 12 else "collector-1") for i in range(32)
    ]
    ahead = [r for r in shared if r.source == "collector-1"]
    behind = [r for r in shared if r.source == "collector-2"]
    part, out = PartitionState(), []
    proc.mark(part, SourceMark("collector-2", 0, BACKFILL_AT, idle=False), out)
    for r in ahead + behind:  # all of collector-1's share first, then collector-2's from the start
        proc.process(part, r, out)
    assert offline(out) == []
    # the same input without the mark: WM-3 is called offline for collector-2's hold-up
    part, out = PartitionState(), []
    for r in ahead + behind:
        proc.process(part, r, out)
    assert ("WM-3", "raise", T0 + 6 * 15 * MIN + 45 * MIN) in offline(out)


def test_a_mark_carries_the_collectors_clock_and_a_last_mark_lets_go_at_once() -> None:
    proc = Processor(BULK_RULES)
    # collector-1 brings WM-1 (it stops at 2 h) and WM-2 (on to 6 h); collector-2 has devices elsewhere
    one = [r for r in through("collector-1", ("WM-1", "WM-2"), 6) if r.device_id == "WM-2" or r.ts < T0 + 2 * HOUR]
    raised = [("WM-1", "raise", T0 + 2 * HOUR - 15 * MIN + 45 * MIN)]
    part, out = PartitionState(), []
    proc.mark(part, SourceMark("collector-2", T0, BACKFILL_AT, idle=False), out)
    for r in one:
        proc.process(part, r, out)
    assert offline(out) == []  # held at collector-2's clock
    proc.mark(part, SourceMark("collector-2", T0 + 5 * HOUR, BACKFILL_AT + 2, idle=False), out)
    assert offline(out) == raised  # its clock moved on (readings it published to other partitions)
    part, out = PartitionState(), []
    proc.mark(part, SourceMark("collector-2", 0, BACKFILL_AT, idle=False), out)
    for r in one:
        proc.process(part, r, out)
    assert offline(out) == []
    proc.mark(part, SourceMark("collector-2", 0, BACKFILL_AT + 3, idle=True), out)  # it stopped
    assert offline(out) == raised
    assert load_state(dump_state(part)).idle_sources == {"collector-2"}


def test_a_source_mark_survives_the_bus() -> None:
    m = SourceMark("collector-7", T0, BACKFILL_AT, idle=False)
    assert decode_control(encode_source_mark(m)) == m


def test_a_device_first_seen_through_the_collector_ahead_is_still_judged_from_its_older_readings() -> None:
    """The broker handed collector-2 (held up) everything for a while, so the first reading of WM-3 the rules
    see is collector-1's, a day after WM-3's silence; its older readings, the silence among them, come later
    through collector-2. The gap must be judged: the device starts at its oldest reading, not its first seen
    (before, it started at the first seen and the silence went unnoticed)."""
    rounds = [i for i in range(200) if not 40 <= i < 120]
    ahead = [water("WM-3", T0 + i * 15 * MIN, "collector-1") for i in rounds if i >= 150 and i % 2]
    behind = [water("WM-3", T0 + i * 15 * MIN, "collector-2") for i in rounds if i < 150 or not i % 2]
    proc = Processor(BULK_RULES)
    part, out = PartitionState(), []
    proc.mark(part, SourceMark("collector-2", 0, BACKFILL_AT, idle=False), out)
    for r in ahead + behind:
        proc.process(part, r, out)
    got = offline(out)
    assert got[0] == ("WM-3", "raise", T0 + 39 * 15 * MIN + 45 * MIN)
    assert [a for _, a, _ in got] == ["raise", "clear"]


def test_a_marks_clock_holds_the_partition_but_never_stamps_its_readings() -> None:
    """One collector; a reading far ahead of the stream on some other partition (a device's clock, say)
    puts its newest event time into the collector's next mark on every partition. Taken as the clock the
    readings here are stamped with, that made a 75-min gap for every e-bike sensor (a single-collector
    deployment raised 281 false offline alarms, docs/bench_scaleout_alarms.json); it must change nothing."""
    proc = Processor(BULK_RULES)
    part, out = PartitionState(), []
    for i in range(180):  # three hours of an e-bike sensor's minute samples
        ts = T0 + i * MIN
        r = reading("EB-1", DeviceType.EBIKE, Channel.DATA, ts, {"power_w": 0.0}, household="RJ-H1")
        proc.process(part, dataclasses.replace(r, source="collector-1"), out)
        if i == 60:
            proc.mark(part, SourceMark("collector-1", ts + 75 * MIN, BACKFILL_AT, idle=False), out)
    assert offline(out) == []
