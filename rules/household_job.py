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
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from psycopg.types.json import Jsonb

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


async def group_rental_detections(
    db: Database,
    as_of: date,
    params: GroupRentalParams,
    *,
    open_now: dict[str, dict[str, Any]] | None = None,
) -> list[Detection]:
    """Run the model for the window ending at `as_of` (a local day whose features are computed).

    `open_now` (household → placement) are the leads open before this day; a run over several days in a
    row passes the same dict, which this call brings up to date, so each day's clears follow the day before
    even though its raises have not reached the alarms table yet. Without it, the open alarms are read."""
    f = await load_features(db, as_of, params.window_days)
    first = as_of - timedelta(days=params.window_days - 1)
    before = open_now if open_now is not None else await open_leads(db)
    found: list[Lead] = await asyncio.to_thread(
        functools.partial(leads, f, params, dismissed=await dismissed(db, first), holding=set(before))
    )
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
    for hid, place in sorted(before.items()):
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
    if open_now is not None:
        for hid in [h for h in open_now if h not in current]:
            del open_now[hid]
        for lead in found:
            building, grid = where.get(lead.household_id, (None, None))
            open_now[lead.household_id] = {"household_id": lead.household_id, "building_id": building, "grid_id": grid}
    return out


async def run_day(db: Database, bus: Bus, as_of: date, params: GroupRentalParams, *, recompute_days: int = 3) -> int:
    """Recompute the recent days' features, run the model as of `as_of`, put detections on the bus."""
    await compute_days(db, as_of - timedelta(days=recompute_days - 1), as_of)
    dets = await group_rental_detections(db, as_of, params)
    if dets:
        await bus.send_many(TOPIC_DETECTIONS, [(d.subject_id.encode(), encode_detection(d)) for d in dets])
    log.info("group rental as of %s: %d detections", as_of, len(dets))
    return len(dets)


@dataclass(frozen=True, slots=True)
class JobRun:
    """What a run of the household job did."""

    featurised: list[date]
    judged: list[date]
    detections: int

    def as_json(self) -> dict[str, Any]:
        return {
            "featurised": [d.isoformat() for d in self.featurised],
            "judged": [d.isoformat() for d in self.judged],
            "detections": self.detections,
        }


def _ranges(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive runs of days as (first, last)."""
    out: list[tuple[date, date]] = []
    for d in sorted(set(days)):
        if out and d == out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


class HouseholdJob:
    """The household job, run from what is stored: it features every local day whose readings are newer than
    its features (imported history, late NB-IoT batches included) and judges every day not judged since.

    When: a day is judged once it is closed (the next day from `run_at_hour`, when the NB-IoT uploads are in)
    and the data has settled (no reading of an earlier day has arrived for `settle_s`: a backfill is over);
    and on demand (`whistle households run`, `POST /api/v1/jobs/household-days`), which asks through
    `household_job_requests` and is carried out here. Detection ids depend on the household, the day and the
    action, so judging a day again (a restart, a rerun) dispatches nothing twice.
    """

    def __init__(
        self,
        db: Database,
        bus: Bus,
        params: GroupRentalParams | None = None,
        *,
        run_at_hour: int = 6,
        settle_s: float = 600.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.params = params or GroupRentalParams()
        self.run_at_hour = run_at_hour
        self.settle_s = settle_s
        self.runs = 0
        self.last: JobRun | None = None

    def closed(self, day: date, now: datetime) -> bool:
        """Whether a day's data is complete enough to judge it on schedule."""
        local = now.astimezone(LOCAL)
        return day < local.date() - timedelta(days=1) or (
            day == local.date() - timedelta(days=1) and local.hour >= self.run_at_hour
        )

    async def tick(self, now: datetime | None = None) -> bool:
        """Carry out a pending request, else the days that are due; True when something ran."""
        at = now or datetime.now(UTC)
        if await self._serve_request():
            return True
        due = await self.due_days(at)
        if not due:
            return False
        await self.run(due, force=False, now=at)
        return True

    async def due_days(self, now: datetime) -> list[date]:
        """Closed days with readings newer than their features, once no reading of an earlier day is arriving."""
        today = now.astimezone(LOCAL).date()
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT r.day, r.last_received, j.featurised_at, j.judged_at FROM reading_days r"
                " LEFT JOIN household_job_days j ON j.day = r.day WHERE r.day < %s ORDER BY r.day",
                (today,),
            )
            rows = await cur.fetchall()
        if not rows:
            return []
        newest = max(r[1] for r in rows)
        if (now - newest).total_seconds() < self.settle_s:
            return []  # a backfill (or the night's uploads) still arriving
        return [
            d
            for d, received, featurised, judged in rows
            if self.closed(d, now) and (featurised is None or received > featurised or judged is None)
        ]

    async def run(self, days: Sequence[date], *, force: bool, now: datetime | None = None) -> JobRun:
        """Feature `days`, then judge, in order, every day whose window holds one of them: those days and the
        (closed) days after them whose judgment they change. On demand (`force`) only the days asked for are
        judged, closed or not."""
        wanted = sorted(set(days))
        if not wanted:
            return JobRun([], [], 0)
        at = now or datetime.now(UTC)
        for first, last in _ranges(wanted):
            await compute_days(self.db, first, last)
        reach = wanted[-1] if force else wanted[-1] + timedelta(days=self.params.window_days - 1)
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO household_job_days (day, featurised_at) SELECT d, now() FROM unnest(%s::date[]) d"
                " ON CONFLICT (day) DO UPDATE SET featurised_at = now()",
                (wanted,),
            )
            cur = await conn.execute(
                "SELECT day FROM reading_days WHERE day BETWEEN %s AND %s ORDER BY day", (wanted[0], reach)
            )
            stored = [r[0] for r in await cur.fetchall()]
        judge = [d for d in sorted(set(stored) | set(wanted)) if force or self.closed(d, at)]
        open_now = await open_leads(self.db)
        total = 0
        judged: list[date] = []
        for d in judge:
            dets = await group_rental_detections(self.db, d, self.params, open_now=open_now)
            if dets:
                items = [(x.subject_id.encode(), encode_detection(x)) for x in dets]
                await self.bus.send_many(TOPIC_DETECTIONS, items)
            total += len(dets)
            judged.append(d)
            async with self.db.connection() as conn:
                await conn.execute(
                    "INSERT INTO household_job_days (day, judged_at, detections) VALUES (%s, now(), %s)"
                    " ON CONFLICT (day) DO UPDATE SET judged_at = now(), detections = EXCLUDED.detections",
                    (d, len(dets)),
                )
        self.runs += 1
        self.last = JobRun(wanted, judged, total)
        log.info("household job: %d days featured, %d judged, %d detections", len(wanted), len(judged), total)
        return self.last

    async def _serve_request(self) -> bool:
        """Take the oldest pending request (several rules processes may look: SKIP LOCKED), run it, answer it."""
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE household_job_requests SET status = 'running', started_at = now() WHERE id = ("
                " SELECT id FROM household_job_requests WHERE status = 'pending' ORDER BY id LIMIT 1"
                " FOR UPDATE SKIP LOCKED) RETURNING id, first_day, last_day"
            )
            row = await cur.fetchone()
        if row is None:
            return False
        rid, first, last = row
        try:
            days = await self._days_between(first, last)
            done = await self.run(days, force=True)
            status, result = "done", done.as_json()
        except Exception as exc:
            log.exception("household job request %s failed", rid)
            status, result = "failed", {"error": f"{type(exc).__name__}: {exc}"}
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE household_job_requests SET status = %s, finished_at = now(), result = %s WHERE id = %s",
                (status, Jsonb(result), rid),
            )
        return True

    async def _days_between(self, first: date | None, last: date | None) -> list[date]:
        """The days with readings in [first, last] (open ends: every day stored, up to yesterday)."""
        yesterday = datetime.now(UTC).astimezone(LOCAL).date() - timedelta(days=1)
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT day FROM reading_days WHERE day >= COALESCE(%s, '-infinity'::date)"
                " AND day <= COALESCE(%s, %s) ORDER BY day",
                (first, last, yesterday),
            )
            return [r[0] for r in await cur.fetchall()]
