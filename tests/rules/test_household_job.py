"""The daily household job against PostgreSQL: features from stored registers, leads, visit feedback."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from alerts.service import AlertService
from rules.group_rental import GroupRentalParams
from rules.household_job import compute_days, group_rental_detections, load_features, local_midnight
from tests.helpers import small_registry
from whistle.domain import Channel, DetectionAction, DeviceType, Outcome, Reading
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database
from whistle.store.writers import copy_readings

FIRST = date(2026, 10, 20)
DAYS = 14
RENTAL = "RJ-H000103"


def registry() -> dict[str, Any]:
    doc = small_registry()
    for i in range(24):
        hid = f"RJ-H{100 + i:06d}"
        doc["households"].append(
            {"id": hid, "building_id": "RJ-B0001" if i < 12 else "RJ-B0002", "registered_occupants": 2}
        )
        doc["devices"] += [
            {"id": f"WM-{100 + i:06d}", "type": "water", "household_id": hid},
            {"id": f"PM-{100 + i:06d}", "type": "power", "household_id": hid},
        ]
    return doc


PEAK3: dict[str, tuple[float, float]] = {}  # day 3's busiest interval per household: litres, kW


def readings(seed: int = 2) -> tuple[list[Reading], dict[str, float]]:
    """Registers every 15 min; the rental flat draws water and power for ten. Returns the day-3 water per household."""
    rng = random.Random(seed)
    out: list[Reading] = []
    day3: dict[str, float] = {}
    PEAK3.clear()
    t0 = int(local_midnight(FIRST).timestamp() * 1000)
    for i in range(24):
        hid = f"RJ-H{100 + i:06d}"
        people = 10 if hid == RENTAL else 2
        building = "RJ-B0001" if i < 12 else "RJ-B0002"
        grid = "RJ-G1-M01" if i < 12 else "RJ-G1-M02"
        water, kwh = 100.0 + i, 2000.0 + i
        for k in range(DAYS * 96 + 1):
            ts = t0 + k * 900_000
            hour = (k % 96) / 4
            awake = 6 <= hour < 23 or (people == 10 and rng.random() < 0.5)
            litres = rng.uniform(0, 2.6 * people) if awake else (rng.uniform(0, 1.5) if rng.random() < 0.2 else 0)
            wh = rng.uniform(10, 45 * people) if awake else 15.0
            if k:
                water += litres / 1000
                kwh += wh / 1000
                if (k - 1) // 96 == 3:  # the interval ending at ts belongs to the local day of ts - 1 ms
                    day3[hid] = day3.get(hid, 0.0) + litres
                    top_l, top_kw = PEAK3.get(hid, (0.0, 0.0))
                    PEAK3[hid] = (max(top_l, litres), max(top_kw, wh * 4 / 1000))
            for dev, dtype, values in (
                (f"WM-{100 + i:06d}", DeviceType.WATER, {"total_m3": round(water, 6)}),
                (f"PM-{100 + i:06d}", DeviceType.POWER, {"total_kwh": round(kwh, 6)}),
            ):
                out.append(Reading(dev, dtype, Channel.DATA, ts, ts, values, k, hid, building, grid))
    return out, day3


async def setup(db: Database) -> dict[str, float]:
    await import_registry(db, parse_registry(registry()))
    rows, day3 = readings()
    async with db.connection() as conn, conn.transaction():
        await copy_readings(conn, rows)
    written = await compute_days(db, FIRST, FIRST + timedelta(days=DAYS - 1))
    assert written == 24 * DAYS
    return day3


async def test_daily_features_are_the_register_deltas_in_local_days(db: Database) -> None:
    day3 = await setup(db)
    f = await load_features(db, FIRST + timedelta(days=DAYS - 1), DAYS)
    assert f.peak_water_l is not None and f.peak_kw is not None
    for hid, litres in list(day3.items())[:5]:
        i = list(f.household_ids).index(hid)
        assert abs(f.water_l[i, 3] - litres) < 0.01, hid
        top_l, top_kw = PEAK3[hid]
        assert abs(f.peak_water_l[i, 3] - top_l) < 0.01, hid  # the busiest 15 minutes (concurrency)
        assert abs(f.peak_kw[i, 3] - top_kw) < 0.01, hid
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT min(water_intervals), max(water_intervals), min(power_intervals) FROM household_days"
        )
        assert await cur.fetchone() == (96, 96, 96)


async def test_the_rental_flat_is_a_lead_and_a_false_alarm_visit_silences_it(db: Database) -> None:
    await setup(db)
    last = FIRST + timedelta(days=DAYS - 1)
    params = GroupRentalParams()
    (d,) = await group_rental_detections(db, last, params)
    assert (d.subject_id, d.action, d.building_id, d.grid_id) == (
        RENTAL,
        DetectionAction.RAISE,
        "RJ-B0001",
        "RJ-G1-M01",
    )
    assert d.evidence["days_flagged"] >= 12 and d.evidence["registered_occupants"] == 2
    # ten people at once fill the busiest quarter hour far beyond the neighbours' (concurrency)
    assert d.evidence["peak_vs_building_median"] >= 3, d.evidence
    week = d.evidence["weekend_vs_weekday_water"]
    assert isinstance(week, float) and 0.7 < week < 1.4  # tenants every day alike, no weekend pattern
    again = await group_rental_detections(db, last, params)
    assert [x.detection_id for x in again] == [d.detection_id]  # a rerun dispatches nothing new

    alerts = AlertService(db)
    applied = await alerts.apply(d)
    assert applied.ticket_id
    await alerts.transition(applied.ticket_id, "resolve", actor="W-09", outcome=Outcome.FALSE_ALARM, note="a family")
    assert await group_rental_detections(db, last, params) == []


async def _noted(db: Database) -> None:
    """What the collector notes as it stores readings: the local days they belong to, arrived now."""
    from whistle.store.writers import note_reading_days

    rows, _ = readings()
    async with db.connection() as conn:
        await note_reading_days(conn, rows)


async def test_imported_history_is_featured_and_judged_day_by_day_once_it_settles(db: Database) -> None:
    from datetime import UTC, datetime

    from rules.household_job import HouseholdJob
    from whistle.bus import TOPIC_DETECTIONS, MemoryBus
    from whistle.serde import decode_detection

    await import_registry(db, parse_registry(registry()))
    rows, _ = readings()
    async with db.connection() as conn, conn.transaction():
        await copy_readings(conn, rows)
    await _noted(db)
    async with MemoryBus(partitions=2) as bus:
        job = HouseholdJob(db, bus, GroupRentalParams(), settle_s=600)
        now = datetime.now(UTC)
        assert await job.due_days(now) == []  # the import arrived just now: it may still be going on
        later = now + timedelta(minutes=11)
        due = await job.due_days(later)
        # every day of the history, not the last three (and the days its first and last midnight registers touch)
        assert due == [FIRST + timedelta(days=k) for k in range(-1, DAYS + 1)]
        assert await job.tick(later)
        assert job.last is not None and job.last.judged == due
        dets = [decode_detection(r.value) for log in bus.partitions(TOPIC_DETECTIONS) for r in log]
        assert {d.subject_id for d in dets if d.action is DetectionAction.RAISE} == {RENTAL}
        assert await job.due_days(later) == []  # done: nothing again until new readings arrive
        async with db.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM household_days")
            assert await cur.fetchone() == (24 * DAYS,)


async def test_a_job_asked_for_is_carried_out_and_answered(db: Database) -> None:
    from rules.household_job import HouseholdJob
    from whistle import jobs
    from whistle.bus import MemoryBus

    await setup(db)
    await _noted(db)
    async with MemoryBus(partitions=2) as bus:
        job = HouseholdJob(db, bus, GroupRentalParams())
        rid = await jobs.request_household_days(db, first=FIRST, last=FIRST + timedelta(days=DAYS - 1), actor="OPS-1")
        assert await job.tick()
        req = await jobs.wait_for_request(db, rid, timeout_s=5)
    assert req.status == "done" and len(req.result["judged"]) == DAYS and req.result["detections"] >= 1, req
