"""The daily household job: features from the stored readings, then the group-rental model.

Group rental is a slow signal (days), judged across many households at once, and NB-IoT meters
deliver a day's readings late; so it runs as a batch over PostgreSQL rather than in the stream.
`compute_days` turns the water and power registers into one row per household and local day
(`household_days`), recomputing the recent days so late readings are counted; `run_group_rental`
loads a window of those rows, runs `rules.group_rental.leads`, and returns detections: a raise
for each lead (repeated daily, which the alerts side merges into the open alarm with fresh
evidence), a clear for an open lead that no longer holds. Visit outcomes feed back: a lead
whose ticket was resolved `false_alarm` suppresses the household (see the model's notes).

Detection ids depend only on the household, the day and the action, so running a day twice
(a restart, an operator rerun) dispatches nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from rules.group_rental import GroupRentalParams, HouseholdDays, Lead, leads
from whistle.bus import TOPIC_DETECTIONS, Bus
from whistle.domain import AlarmKind, Detection, DetectionAction, Severity, SubjectType
from whistle.serde import encode_detection
from whistle.store.db import Database

log = logging.getLogger(__name__)

LOCAL = ZoneInfo("Asia/Shanghai")
MIN_INTERVALS = 80  # of 96 fifteen-minute intervals: a day with fewer is not judged

_FEATURES_SQL = """
WITH r AS (
    SELECT d.household_id, r.device_id, r.device_type, r.ts,
           CASE WHEN r.device_type = 'water' THEN (r.payload ->> 'total_m3')::float8 * 1000
                ELSE (r.payload ->> 'total_kwh')::float8 END AS reg
    FROM readings r JOIN devices d ON d.id = r.device_id
    WHERE r.channel = 'data' AND r.device_type IN ('water', 'power') AND d.household_id IS NOT NULL
      AND r.ts >= %(lo)s - interval '2 hours' AND r.ts <= %(hi)s
),
deltas AS (
    SELECT household_id, device_type, ts,
           reg - lag(reg) OVER w AS delta, ts - lag(ts) OVER w AS dt
    FROM r WINDOW w AS (PARTITION BY device_id ORDER BY ts)
),
valid AS (
    SELECT household_id, device_type, ((ts - interval '1 millisecond') AT TIME ZONE 'Asia/Shanghai') AS local, delta,
           extract(epoch FROM dt) AS seconds
    FROM deltas
    WHERE delta >= 0 AND dt <= interval '2 hours' AND ts > %(lo)s AND ts <= %(hi)s
)
INSERT INTO household_days (household_id, day, water_l, kwh, night_water_share, night_kwh_share,
                            water_intervals, power_intervals, peak_water_l, peak_kw, computed_at)
SELECT household_id, local::date,
       sum(delta) FILTER (WHERE device_type = 'water'),
       sum(delta) FILTER (WHERE device_type = 'power'),
       sum(delta) FILTER (WHERE device_type = 'water' AND extract(hour FROM local) < 5)
           / nullif(sum(delta) FILTER (WHERE device_type = 'water'), 0),
       sum(delta) FILTER (WHERE device_type = 'power' AND extract(hour FROM local) < 5)
           / nullif(sum(delta) FILTER (WHERE device_type = 'power'), 0),
       count(*) FILTER (WHERE device_type = 'water'),
       count(*) FILTER (WHERE device_type = 'power'),
       max(delta) FILTER (WHERE device_type = 'water' AND seconds <= 1200),
       max(delta * 3600 / seconds) FILTER (WHERE device_type = 'power' AND seconds > 0 AND seconds <= 1200),
       now()
FROM valid
GROUP BY household_id, local::date
ON CONFLICT (household_id, day) DO UPDATE SET
    water_l = EXCLUDED.water_l, kwh = EXCLUDED.kwh, night_water_share = EXCLUDED.night_water_share,
    night_kwh_share = EXCLUDED.night_kwh_share, water_intervals = EXCLUDED.water_intervals,
    power_intervals = EXCLUDED.power_intervals, peak_water_l = EXCLUDED.peak_water_l,
    peak_kw = EXCLUDED.peak_kw, computed_at = now()
"""


def local_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), LOCAL)


def day_end_ms(d: date) -> int:
    """The event time a day's detections carry: the end of that local day."""
    return int(local_midnight(d + timedelta(days=1)).timestamp() * 1000)


async def compute_days(db: Database, first: date, last: date) -> int:
    """(Re)compute `household_days` for the local days first..last; returns the rows written."""
    lo = local_midnight(first)
    hi = local_midnight(last + timedelta(days=1))
    async with db.connection() as conn:
        cur = await conn.execute(_FEATURES_SQL, {"lo": lo, "hi": hi})
        return cur.rowcount


async def load_features(db: Database, last: date, days: int) -> HouseholdDays:
    """The window of `days` local days ending at `last`, for every registered household."""
    first = last - timedelta(days=days - 1)
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT h.id, h.registered_occupants, h.building_id, coalesce(g.parent_id, g.id)"
            " FROM households h JOIN buildings b ON b.id = h.building_id JOIN grids g ON g.id = b.grid_id"
            " ORDER BY h.id"
        )
        hh = await cur.fetchall()
        cur = await conn.execute(
            "SELECT household_id, day, water_l, kwh, night_water_share, night_kwh_share, water_intervals,"
            " power_intervals, peak_water_l, peak_kw FROM household_days WHERE day BETWEEN %s AND %s",
            (first, last),
        )
        rows = await cur.fetchall()
    index = {row[0]: i for i, row in enumerate(hh)}
    buildings: dict[str, int] = {}
    areas: dict[str, int] = {}
    n, d = len(hh), days
    water = np.full((n, d), np.nan)
    kwh = np.full((n, d), np.nan)
    night_w = np.full((n, d), np.nan)
    night_e = np.full((n, d), np.nan)
    peak_w = np.full((n, d), np.nan)
    peak_e = np.full((n, d), np.nan)
    for hid, day, w, e, nw, ne, wn, pn, pw, pe in rows:
        i = index.get(hid)
        if i is None:
            continue
        j = (day - first).days
        if wn >= MIN_INTERVALS and pn >= MIN_INTERVALS and w is not None and e is not None:
            water[i, j], kwh[i, j] = w, e
            night_w[i, j] = nw if nw is not None else 0.0
            night_e[i, j] = ne if ne is not None else 0.0
            peak_w[i, j] = pw if pw is not None else np.nan
            peak_e[i, j] = pe if pe is not None else np.nan
    return HouseholdDays(
        household_ids=[row[0] for row in hh],
        registered=np.array([row[1] for row in hh], dtype=np.int64),
        building=np.array([buildings.setdefault(row[2], len(buildings)) for row in hh], dtype=np.int64),
        area=np.array([areas.setdefault(row[3], len(areas)) for row in hh], dtype=np.int64),
        days=[(first + timedelta(days=k)).isoformat() for k in range(d)],
        water_l=water,
        kwh=kwh,
        night_water_share=night_w,
        night_kwh_share=night_e,
        peak_water_l=peak_w,
        peak_kw=peak_e,
    )


async def dismissed(db: Database, first: date) -> dict[str, tuple[int, float]]:
    """Households whose group-rental ticket was resolved `false_alarm`: (day index from `first`, score)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT a.subject_id, max(t.resolved_at), max((a.evidence ->> 'score')::float8)"
            " FROM tickets t JOIN ticket_alarms ta ON ta.ticket_id = t.id JOIN alarms a ON a.id = ta.alarm_id"
            " WHERE a.kind = %s AND t.outcome = 'false_alarm' GROUP BY a.subject_id",
            (AlarmKind.GROUP_RENTAL_SUSPECTED.value,),
        )
        out: dict[str, tuple[int, float]] = {}
        for hid, at, score in await cur.fetchall():
            out[hid] = ((at.astimezone(LOCAL).date() - first).days, float(score or 0.0))
    return out


async def open_leads(db: Database) -> dict[str, dict[str, Any]]:
    """Households with an open group-rental alarm, with its placement."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT subject_id, household_id, building_id, grid_id FROM alarms WHERE kind = %s AND status <> 'cleared'",
            (AlarmKind.GROUP_RENTAL_SUSPECTED.value,),
        )
        return {r[0]: {"household_id": r[1], "building_id": r[2], "grid_id": r[3]} for r in await cur.fetchall()}


async def _placements(db: Database, ids: list[str]) -> dict[str, tuple[str, str]]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT h.id, h.building_id, b.grid_id FROM households h JOIN buildings b ON b.id = h.building_id"
            " WHERE h.id = ANY(%s)",
            (ids,),
        )
        return {r[0]: (r[1], r[2]) for r in await cur.fetchall()}


def _detection(
    hid: str, building: str | None, grid: str | None, ts: int, action: DetectionAction, ev: Any
) -> Detection:
    return Detection(
        kind=AlarmKind.GROUP_RENTAL_SUSPECTED,
        severity=Severity.MINOR,
        subject_type=SubjectType.HOUSEHOLD,
        subject_id=hid,
        ts=ts,
        action=action,
        evidence=ev,
        household_id=hid,
        building_id=building,
        grid_id=grid,
        source_id=f"group_rental:{ts}",
    )


async def group_rental_detections(db: Database, as_of: date, params: GroupRentalParams) -> list[Detection]:
    """Run the model for the window ending at `as_of` (a local day whose features are computed)."""
    f = await load_features(db, as_of, params.window_days)
    first = as_of - timedelta(days=params.window_days - 1)
    found: list[Lead] = await asyncio.to_thread(leads, f, params, dismissed=await dismissed(db, first))
    ts = day_end_ms(as_of)
    where = await _placements(db, [lead.household_id for lead in found])
    out = []
    for lead in found:
        building, grid = where.get(lead.household_id, (None, None))
        out.append(
            _detection(
                lead.household_id, building, grid, ts, DetectionAction.RAISE, {**lead.evidence, "score": lead.score}
            )
        )
    current = {lead.household_id for lead in found}
    for hid, place in (await open_leads(db)).items():
        if hid not in current:
            out.append(
                _detection(
                    hid,
                    place["building_id"],
                    place["grid_id"],
                    ts,
                    DetectionAction.CLEAR,
                    {"reason": "no longer suspicious", "as_of": as_of.isoformat()},
                )
            )
    return out


async def run_day(db: Database, bus: Bus, as_of: date, params: GroupRentalParams, *, recompute_days: int = 3) -> int:
    """Recompute the recent days' features, run the model as of `as_of`, put detections on the bus."""
    await compute_days(db, as_of - timedelta(days=recompute_days - 1), as_of)
    dets = await group_rental_detections(db, as_of, params)
    if dets:
        await bus.send_many(TOPIC_DETECTIONS, [(d.subject_id.encode(), encode_detection(d)) for d in dets])
    log.info("group rental as of %s: %d detections", as_of, len(dets))
    return len(dets)


class HouseholdJob:
    """Runs the daily job once per local day, after `run_at_hour` (NB-IoT uploads are in by then)."""

    def __init__(
        self, db: Database, bus: Bus, params: GroupRentalParams | None = None, *, run_at_hour: int = 6
    ) -> None:
        self.db = db
        self.bus = bus
        self.params = params or GroupRentalParams()
        self.run_at_hour = run_at_hour
        self.last_day: date | None = None
        self.runs = 0

    async def tick(self, now: datetime | None = None) -> bool:
        """Run for yesterday if it is time and not done yet; True when it ran."""
        local = (now or datetime.now(UTC)).astimezone(LOCAL)
        if local.hour < self.run_at_hour:
            return False
        yesterday = local.date() - timedelta(days=1)
        if self.last_day == yesterday:
            return False
        await run_day(self.db, self.bus, yesterday, self.params)
        self.last_day = yesterday
        self.runs += 1
        return True
