"""Meters that report apart: a household's water and power in separate daily batches, hours apart and in either
order, give the same alarms as the same readings interleaved in time (issue 14, item 4)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from rules.catalog import BULK_RULES
from rules.processor import PartitionState, Processor
from tests.rules.support import HOUR, MIN, reading, topology
from tests.rules.test_lone_elder import D0, DAY, HH, STEP, day_profile
from whistle.domain import AlarmKind, Channel, Detection, DeviceType, Reading

DAYS = 21
ONSET = D0 + 17 * DAY + 14 * HOUR + 20 * MIN  # a fall after lunch on day 17 ...
FOUND = ONSET + 16 * HOUR  # ... found 16 h later: the flat is alive again (a relative, then the elder)


def household(*, water_at: int | None, power_at: int | None) -> list[Reading]:
    """Three weeks of one lone elder's 15-min registers. `water_at` / `power_at`: each meter uploads a local
    day's readings in one batch at that many ms after the next local midnight (None: each reading live).
    Returned in arrival order."""
    rng = random.Random(7)
    water, kwh = 12.0, 3000.0
    out: list[tuple[int, int, Reading]] = []
    for d in range(DAYS):
        for s, (drawn, used) in enumerate(day_profile(rng)):
            ts = D0 + d * DAY + (s + 1) * STEP
            stopped = ONSET < ts <= FOUND
            water += 0.0 if stopped else drawn / 1000
            kwh += (25 + (0.0 if stopped else used)) / 1000
            day_end = D0 + (d + 1) * DAY
            for dev, dtype, values, upload in (
                ("WM-1", DeviceType.WATER, {"total_m3": round(water, 3)}, water_at),
                ("PM-1", DeviceType.POWER, {"total_kwh": round(kwh, 3)}, power_at),
            ):
                arrive = ts + 50 if upload is None else day_end + upload
                r = reading(dev, dtype, Channel.DATA, ts, values, household=HH, received_at=arrive)
                out.append((arrive, len(out), r))
    out.sort(key=lambda x: (x[0], x[1]))
    return [r for _, _, r in out]


def alarms(readings: Iterable[Reading]) -> list[Detection]:
    """The lone-elder detections of the bulk lane's processor over `readings`, in the order they come."""
    proc = Processor(BULK_RULES, topology=topology((HH,)))
    part = PartitionState()
    out: list[Detection] = []
    for r in readings:
        proc.process(part, r, out)
    return [d for d in out if d.kind is AlarmKind.LONE_ELDER_INACTIVE]


def key(dets: Iterable[Detection]) -> Iterator[tuple[object, ...]]:
    for d in dets:
        yield (d.detection_id, d.action.value, d.ts, dict(d.evidence))


def test_daily_batches_in_either_order_give_the_alarms_of_the_readings_in_time() -> None:
    live = alarms(household(water_at=None, power_at=None))
    water_first = alarms(household(water_at=3 * HOUR, power_at=8 * HOUR))  # NB-IoT at night, the utility after
    power_first = alarms(household(water_at=9 * HOUR, power_at=2 * HOUR))  # and the other way round
    hours_apart = alarms(household(water_at=1 * HOUR, power_at=23 * HOUR))  # almost a day between them
    assert list(key(water_first)) == list(key(live))
    assert list(key(power_first)) == list(key(live))
    assert list(key(hours_apart)) == list(key(live))
    # and what that is: the fall raised once, at 20:00, 5.7 h after it (the quiet from the last draw at 12:30
    # outlasted this person's usual longest afternoon quiet, 4.5 h, by 1.2 x + 2 h), and cleared once, at 06:30,
    # by the first draw after she was found
    assert [d.action.value for d in live] == ["raise", "clear"]
    raise_, clear = live
    assert raise_.ts == D0 + 17 * DAY + 20 * HOUR
    assert raise_.evidence["quiet_since"] == D0 + 17 * DAY + 12 * HOUR + 30 * MIN
    assert (raise_.evidence["basis"], raise_.evidence["threshold_hours"]) == ("routine_day", 7.4)
    assert raise_.evidence["usual_longest_quiet_from_this_time_hours"] == 4.5
    assert clear.ts == D0 + 18 * DAY + 6 * HOUR + 30 * MIN and clear.evidence["reason"] == "water"


def test_a_day_of_water_alone_is_not_silence_while_the_power_batch_is_due() -> None:
    """Until the power meter's day arrives, the quarter hours past its last reading are not judged at all: no
    alarm raised on the water alone and cleared again by the power hours later (what flapped before)."""
    got = alarms(household(water_at=3 * HOUR, power_at=8 * HOUR))
    raises = [d for d in got if d.action.value == "raise"]
    assert len(raises) == 1


def test_a_household_whose_power_meter_never_reports_is_judged_on_its_water() -> None:
    only_water = [r for r in household(water_at=None, power_at=None) if r.device_type is DeviceType.WATER]
    got = alarms(only_water)
    assert [d.action.value for d in got][:1] == ["raise"]
    assert ONSET < got[0].ts <= ONSET + 12 * HOUR
