"""device.offline through the processor, since it lives on timers."""

from __future__ import annotations

import dataclasses

from rules.catalog import BULK_RULES
from rules.config import RuleConfig
from rules.processor import PartitionState, Processor
from tests.rules.support import HOUR, MIN, T0, reading
from whistle.domain import AlarmKind, Channel, Detection, DeviceType, Reading
from whistle.serde import decode_reading, encode_reading


def water(device: str, ts: int, total: float = 1.0, received_at: int | None = None) -> Reading:
    return reading(
        device, DeviceType.WATER, Channel.DATA, ts, {"total_m3": total}, household="RJ-H1", received_at=received_at
    )


def offline(out: list[Detection]) -> list[tuple[str, str, int]]:
    return [(d.subject_id, d.action.value, d.ts) for d in out if d.kind is AlarmKind.DEVICE_OFFLINE]


def test_a_meter_that_stops_is_offline_after_three_missed_intervals_by_the_clock_of_the_others() -> None:
    proc = Processor(BULK_RULES)
    part = PartitionState()
    out: list[Detection] = []
    for i in range(4 * 8):  # 8 hours of 15-min readings; WM-2 stops after hour 2
        ts = T0 + i * 15 * MIN
        proc.process(part, water("WM-1", ts), out)
        if ts < T0 + 2 * HOUR:
            proc.process(part, water("WM-2", ts), out)
    last = T0 + 2 * HOUR - 15 * MIN
    assert offline(out) == [("WM-2", "raise", last + 45 * MIN)]
    proc.process(part, water("WM-2", T0 + 9 * HOUR), out)
    assert [x for x in offline(out) if x[0] == "WM-2"][-1] == ("WM-2", "clear", T0 + 9 * HOUR)


def test_offline_fires_on_a_quiet_live_stream_by_the_wall_clock() -> None:
    proc = Processor(BULK_RULES, idle_after_ms=5_000)
    part = PartitionState()
    out: list[Detection] = []
    proc.process(part, water("WM-1", T0), out)
    assert proc.idle_clock(part, T0 + 2_000, idle_ms=2_000) is None  # not idle long enough
    wall = T0 + 60 * MIN
    target = proc.idle_clock(part, wall, idle_ms=60 * 60_000)
    assert target == wall - 5_000
    proc.advance(part, target, out)
    assert offline(out) == [("WM-1", "raise", T0 + 45 * MIN)]


def test_a_paused_backfill_does_not_jump_to_the_wall_clock() -> None:
    proc = Processor(BULK_RULES)
    part = PartitionState()
    proc.process(part, water("WM-1", T0 - 3 * 86_400_000), [])
    assert proc.idle_clock(part, T0, idle_ms=600_000) is None


def test_a_batch_uploading_meter_is_allowed_a_day() -> None:
    proc = Processor(BULK_RULES)
    part = PartitionState()
    out: list[Detection] = []
    day = 86_400_000
    for d in range(3):
        start = T0 + d * day
        for i in range(96):
            proc.process(part, water("WM-1", start + i * 15 * MIN), out)
        for i in range(96):  # at the end of the day its readings arrive at once
            proc.process(part, water("NB-1", start + i * 15 * MIN), out)
    assert [x for x in offline(out) if x[0] == "NB-1"] == []
    for i in range(96 * 2):  # NB-1 goes silent for two days
        proc.process(part, water("WM-1", T0 + 3 * day + i * 15 * MIN), out)
    (hit,) = [x for x in offline(out) if x[0] == "NB-1"]
    assert hit[1] == "raise"


def test_an_offline_will_raises_after_the_grace_unless_the_device_returns() -> None:
    proc = Processor(BULK_RULES)
    part = PartitionState()
    out: list[Detection] = []
    will = reading("WM-1", DeviceType.WATER, Channel.STATUS, T0, {"online": False}, household="RJ-H1")
    proc.process(part, will, out)
    proc.process(part, water("WM-2", T0 + 4 * MIN), out)
    proc.process(part, water("WM-1", T0 + 4 * MIN + 1), out)  # back within the grace
    proc.process(part, will.__class__(**{**_fields(will), "ts": T0 + 10 * MIN}), out)
    proc.process(part, water("WM-2", T0 + 26 * MIN), out)  # the watermark (clock - 10 min) passes T0 + 15 min
    assert [x for x in offline(out) if x[0] == "WM-1"] == [("WM-1", "raise", T0 + 15 * MIN)]


def _fields(r: Reading) -> dict[str, object]:
    return {f: getattr(r, f) for f in r.__slots__}


def test_intervals_per_device_type_are_configurable() -> None:
    cfg = RuleConfig(
        {"overrides": [{"device_type": "water", "rules": {"device.offline": {"intervals_s": {"water": 600}}}}]}
    )
    proc = Processor(BULK_RULES, config=cfg)
    part = PartitionState()
    out: list[Detection] = []
    proc.process(part, water("WM-1", T0), out)
    proc.process(part, reading("PM-1", DeviceType.POWER, Channel.DATA, T0 + 21 * MIN, {"total_kwh": 1.0}), out)
    assert offline(out) == [("WM-1", "raise", T0 + 10 * MIN)]


def test_a_device_trailing_the_others_by_minutes_is_not_offline() -> None:
    proc = Processor(BULK_RULES)
    part = PartitionState()
    out: list[Detection] = []
    for i in range(40):  # EB-1 every minute; the clock other devices drive jumps up to 12 minutes ahead of it
        ts = T0 + i * MIN
        lead = 12 * MIN if i % 2 else 0
        proc.process(part, reading("WM-1", DeviceType.WATER, Channel.DATA, ts + lead, {"total_m3": 1.0}), out)
        proc.process(part, reading("EB-1", DeviceType.EBIKE, Channel.DATA, ts, {"power_w": 3.0}), out)
    assert offline(out) == []
    strict = Processor(BULK_RULES, lateness_ms=0)  # without the declared lateness it would have been called offline
    part = PartitionState()
    out = []
    for i in range(40):
        ts = T0 + i * MIN
        lead = 12 * MIN if i % 2 else 0
        strict.process(part, reading("WM-1", DeviceType.WATER, Channel.DATA, ts + lead, {"total_m3": 1.0}), out)
        strict.process(part, reading("EB-1", DeviceType.EBIKE, Channel.DATA, ts, {"power_w": 3.0}), out)
    assert [x[0] for x in offline(out)][:1] == ["EB-1"]


def test_readings_delivered_again_after_a_restart_are_no_sign_of_life() -> None:
    # What the Kafka SIGKILL fault scenario meets (tests/faults/test_brokers.py): the collector stored and
    # published readings, was killed before acknowledging them, and the broker delivers them again to the
    # next one — hours of event time behind the stream, in a backfill. The offline rule took them for arrivals
    # at that late time (a meter silent from 07:00 was "seen" at 09:00), or for a batch uploader's, and never
    # called the meter offline. They must change nothing.
    def stream(repeat_from: int | None) -> list[Reading]:
        out: list[Reading] = []
        for i in range(4 * 18):  # 18 hours of quarter hours; WM-2 silent from 07:00 to 11:00
            ts = T0 + i * 15 * MIN
            out.append(water("WM-1", ts, total=1.0 + i))
            if not T0 + 7 * HOUR <= ts < T0 + 11 * HOUR:
                out.append(water("WM-2", ts, total=1.0 + i))
            if repeat_from is not None and ts == T0 + 9 * HOUR:  # killed here: the last five hours come again
                out += [r for r in out if repeat_from <= r.ts <= ts]
        return out

    def judged(readings: list[Reading]) -> list[tuple[str, str, int]]:
        proc, part, out = Processor(BULK_RULES), PartitionState(), []
        for r in readings:
            proc.process(part, r, out)
        return offline(out)

    once = judged(stream(None))
    assert once == [("WM-2", "raise", T0 + 7 * HOUR + 30 * MIN), ("WM-2", "clear", T0 + 11 * HOUR)]
    assert judged(stream(T0 + 4 * HOUR)) == once
    assert judged(stream(T0 + 8 * HOUR + 45 * MIN)) == once  # a few minutes again: nothing either


def test_a_sensor_that_uploads_an_hour_at_a_time_is_a_batch_uploader_not_offline_every_hour() -> None:
    # An e-bike sensor reporting every minute, buffered and uploaded once an hour as {"batch": [...]} (the
    # CREST-driven evaluation's e-bike chargers do this): its readings arrive less than an hour late, so
    # lateness alone does not show it is a batch uploader, and judged reading by reading it was "offline"
    # for most of every hour. The collector marks readings of a batch message; the rule takes the mark.
    def hours(batched: bool) -> list[tuple[str, str, int]]:
        proc, part, out = Processor(BULK_RULES), PartitionState(), []
        for h in range(6):
            upload = T0 + (h + 1) * HOUR  # the hour's readings arrive together at its end
            proc.process(part, water("WM-1", upload), out)  # another device keeps the clock moving
            for m in range(60):
                r = reading("EB-1", DeviceType.EBIKE, Channel.DATA, T0 + h * HOUR + m * MIN, {"power_w": 3.0})
                proc.process(part, dataclasses.replace(r, batched=batched, received_at=upload), out)
        return [x for x in offline(out) if x[0] == "EB-1"]

    assert hours(batched=True) == []
    assert hours(batched=False) != []  # what the evaluation met before the mark


def test_a_meter_heard_only_by_its_heartbeat_is_not_judged_by_a_data_cadence_it_has_not_shown() -> None:
    # The simulator's NB-IoT meters through the front door (evaluation, 2026-12-01: 33 device.offline for 300
    # meters, all on the stream's first day, 280-301 in the evaluation of record): a meter's first message is
    # its status heartbeat just after midnight, its first data a daily batch at 04:30. Judged by the 45 min of
    # a 15-min meter from the heartbeat, every such meter was "offline" until its first upload.
    proc, part, out = Processor(BULK_RULES), PartitionState(), []
    status = reading("NB-1", DeviceType.WATER, Channel.STATUS, T0 + 3 * MIN, {"battery_pct": 80.0}, household="RJ-H2")
    proc.process(part, status, out)
    for i in range(4 * 8):  # another meter keeps the clock moving: 8 hours of 15-min readings
        proc.process(part, water("WM-1", T0 + i * 15 * MIN), out)
        if i == 18:  # 04:30: NB-1 uploads what it holds, as one batch message
            for k in range(18):
                r = water("NB-1", T0 + k * 15 * MIN, received_at=T0 + 18 * 15 * MIN)
                proc.process(part, dataclasses.replace(r, batched=True), out)
    assert [x for x in offline(out) if x[0] == "NB-1"] == []
    # and a meter that shows a live cadence after its heartbeat is judged by it from then on
    proc, part, out = Processor(BULK_RULES), PartitionState(), []
    proc.process(part, dataclasses.replace(status, device_id="WM-2"), out)
    for i in range(4 * 8):
        proc.process(part, water("WM-1", T0 + i * 15 * MIN), out)
        if i < 8:  # WM-2 reports live for two hours, then stops
            proc.process(part, water("WM-2", T0 + i * 15 * MIN), out)
    assert [x for x in offline(out) if x[0] == "WM-2"] == [("WM-2", "raise", T0 + 7 * 15 * MIN + 45 * MIN)]
    # an elevator is connected: heard only by its status, it keeps its 10 minutes
    proc, part, out = Processor(BULK_RULES), PartitionState(), []
    proc.process(part, reading("EL-1", DeviceType.ELEVATOR, Channel.STATUS, T0, {"online": True}), out)
    for i in range(8):
        proc.process(part, water("WM-1", T0 + i * 15 * MIN), out)
    assert [x for x in offline(out) if x[0] == "EL-1"] == [("EL-1", "raise", T0 + 10 * MIN)]


def test_the_bus_record_keeps_the_batched_mark() -> None:
    r = dataclasses.replace(water("WM-1", T0), batched=True)
    assert decode_reading(encode_reading(r)).batched
    assert not decode_reading(encode_reading(water("WM-1", T0))).batched
    assert b'"B"' not in encode_reading(water("WM-1", T0))
