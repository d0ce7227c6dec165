"""The streaming core: dispatch, duplicates, timers and snapshot/restore equivalence."""

from __future__ import annotations

import random

from rules.catalog import BULK_RULES, PRIORITY_RULES
from rules.engine import dump_state, load_state
from rules.processor import PartitionState, Processor
from tests.rules.support import MIN, T0, reading, topology
from whistle.domain import AlarmKind, Channel, Detection, DeviceType, Reading


def stream(seed: int = 7, minutes: int = 600) -> list[Reading]:
    """A mixed bulk stream: meters (one stops, one leaks), a charger, smoke heartbeats, with late repeats."""
    rng = random.Random(seed)
    out: list[Reading] = []
    totals = {"WM-1": 1.0, "WM-2": 2.0, "WM-3": 3.0}
    for m in range(minutes):
        ts = T0 + m * MIN
        w = 4.0 + (180.0 if 120 <= m < 400 else 0.0)
        out.append(reading("EB-1", DeviceType.EBIKE, Channel.DATA, ts, {"power_w": w}, household="H1"))
        if m % 15 == 0:
            for dev in list(totals):
                if dev == "WM-2" and m > 200:
                    continue  # stops reporting
                totals[dev] += 0.02 if dev == "WM-3" else rng.choice([0.0, 0.0, 0.01])
                out.append(
                    reading(
                        dev,
                        DeviceType.WATER,
                        Channel.DATA,
                        ts,
                        {"total_m3": round(totals[dev], 3)},
                        household="H" + dev[-1],
                    )
                )
        if m % 240 == 0:
            out.append(reading("SM-1", DeviceType.SMOKE, Channel.STATUS, ts, {"battery_pct": 50 - m / 30}))
    # redeliveries: copies of readings arriving again a little later
    for _ in range(40):
        i = rng.randrange(len(out) - 60)
        out.insert(i + rng.randint(1, 50), out[i])
    return out


def run(proc: Processor, part: PartitionState, readings: list[Reading]) -> list[Detection]:
    out: list[Detection] = []
    for r in readings:
        proc.process(part, r, out)
    return out


def test_the_stream_raises_what_it_should() -> None:
    dets = run(Processor(BULK_RULES, topology=topology()), PartitionState(), stream())
    kinds = sorted({(d.kind.value, d.subject_id, d.action.value) for d in dets})
    assert ("ebike.indoor_charging", "EB-1", "raise") in kinds
    assert ("ebike.indoor_charging", "EB-1", "clear") in kinds
    assert ("device.offline", "WM-2", "raise") in kinds
    assert ("water.continuous_flow", "H3", "raise") in kinds
    assert sum(1 for d in dets if d.kind is AlarmKind.EBIKE_INDOOR_CHARGING and d.action.value == "raise") == 1


def test_a_restored_snapshot_continues_exactly_like_an_uninterrupted_run() -> None:
    readings = stream()
    whole = run(Processor(BULK_RULES, topology=topology()), PartitionState(), readings)
    for cut in (1, 137, len(readings) // 2, len(readings) - 3):
        first = Processor(BULK_RULES, topology=topology())
        part = PartitionState()
        before = run(first, part, readings[:cut])
        restored = load_state(dump_state(part))
        after = run(Processor(BULK_RULES, topology=topology()), restored, readings[cut:])
        assert [d.detection_id for d in before + after] == [d.detection_id for d in whole], cut


def test_an_exact_repeat_of_a_device_event_is_dropped() -> None:
    proc = Processor(PRIORITY_RULES)
    part = PartitionState()
    alarm = reading("SM-1", DeviceType.SMOKE, Channel.EVENT, T0, {"event": "alarm"}, seq=4)
    out: list[Detection] = []
    proc.process(part, alarm, out)
    proc.process(part, alarm, out)
    assert len(out) == 1 and part.duplicates == 1


def test_readings_no_rule_reads_still_move_the_clock() -> None:
    proc = Processor(PRIORITY_RULES)
    part = PartitionState()
    proc.process(part, reading("EL-1", DeviceType.ELEVATOR, Channel.EVENT, T0 + 5, {"event": "recovered"}), [])
    assert part.clock == T0 + 5
    proc.process(part, reading("EL-1", DeviceType.ELEVATOR, Channel.EVENT, T0, {"event": "recovered"}), [])
    assert part.clock == T0 + 5  # never backwards
