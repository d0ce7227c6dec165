"""The daily rollups: whole days read from them agree, to the second, with adding every ticket and alarm up live,
while tickets are resolved and alarms cleared on either side of the watermark."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from stats.assessment import Period, assess_grids, assess_workers
from stats.rollups import MARGIN, whole_days
from stats.trends import Bucket, trends
from tests.stats.conftest import NOW, T0, Evening, S
from whistle.domain import Outcome
from whistle.timeutil import CHINA_TZ, to_datetime

NARROW = Period(to_datetime(T0 - 3600 * S), to_datetime(T0 + 3600 * S))  # no whole day: all live
WIDE = Period(to_datetime(T0) - timedelta(days=2), to_datetime(T0) + timedelta(days=2))  # 11-17..11-19 whole


async def rows(evening: Evening, sql: str) -> list[tuple[Any, ...]]:
    async with evening.db.connection() as conn:
        return await (await conn.execute(sql)).fetchall()


def test_whole_days_are_local_midnights_inside_the_window() -> None:
    days = whole_days(WIDE.since, WIDE.until)
    assert days is not None
    assert (days.start, days.end) == (datetime(2026, 11, 17, tzinfo=CHINA_TZ), datetime(2026, 11, 20, tzinfo=CHINA_TZ))
    assert (str(days.first), str(days.stop)) == ("2026-11-17", "2026-11-20")
    assert whole_days(NARROW.since, NARROW.until) is None
    midnight = datetime(2026, 11, 18, tzinfo=CHINA_TZ)
    assert whole_days(midnight, midnight + timedelta(days=1)) == type(days)(midnight, midnight + timedelta(days=1))


async def same_both_ways(evening: Evening, now: datetime) -> None:
    wide = await assess_grids(evening.db, period=WIDE, now=now)
    narrow = await assess_grids(evening.db, period=NARROW, now=now)
    assert [(g.grid_id, g.own, g.total) for g in wide] == [(g.grid_id, g.own, g.total) for g in narrow]
    workers_wide = await assess_workers(evening.db, period=WIDE, now=now)
    assert [w.measures for w in workers_wide] == [
        w.measures for w in await assess_workers(evening.db, period=NARROW, now=now)
    ]


async def test_the_assessment_of_whole_days_is_the_rollup_plus_what_is_still_live(evening: Evening) -> None:
    await same_both_ways(evening, to_datetime(NOW))
    # the watermark moved to five minutes before now: A and B (resolved at +1800 s and +2100 s) are rolled up
    assert await rows(evening, "SELECT through FROM stats_marks WHERE name = 'tickets'") == [
        (to_datetime(NOW) - MARGIN,)
    ]
    rolled = "SELECT day::text, grid_id, assignee_id, tickets, ack_on_time, resolved FROM ticket_days ORDER BY 2"
    assert await rows(evening, rolled) == [
        ("2026-11-18", "RJ-G1-M01", "W-09", 1, 1, 1),
        ("2026-11-18", "RJ-G1-M02", "W-LEAD", 1, 0, 1),
    ]

    # C is resolved now, after the watermark: it is counted live, once
    evening.clock.t = NOW + 60 * S
    await evening.service.transition(evening.tickets["C"], "resolve", actor="W", outcome=Outcome.FALSE_ALARM)
    now = to_datetime(evening.clock.t)
    await same_both_ways(evening, now)
    m02 = {g.grid_id: g for g in await assess_grids(evening.db, period=WIDE, now=now)}["RJ-G1-M02"]
    assert (m02.own.tickets, m02.own.open, m02.own.resolved, m02.own.false_alarms) == (3, 1, 2, 2)
    assert (await rows(evening, "SELECT sum(tickets) FROM ticket_days"))[0] == (2,)  # the mark was fresh

    # a quarter of an hour later the watermark passes C's resolution: C moves into the rollup, nothing changes
    evening.clock.t = NOW + 900 * S
    await same_both_ways(evening, to_datetime(evening.clock.t))
    assert (await rows(evening, "SELECT sum(tickets) FROM ticket_days WHERE grid_id = 'RJ-G1-M02'"))[0] == (2,)
    assert (await rows(evening, "SELECT sum(false_alarms) FROM ticket_days"))[0] == (2,)


async def test_scope_applies_to_the_rollup_too(evening: Evening) -> None:
    wide = await assess_grids(evening.db, period=WIDE, now=to_datetime(NOW), grids=["RJ-G1-M01"])
    narrow = await assess_grids(evening.db, period=NARROW, now=to_datetime(NOW), grids=["RJ-G1-M01"])
    assert [(g.grid_id, g.total) for g in wide] == [(g.grid_id, g.total) for g in narrow]
    assert wide[0].total.tickets == 2


async def test_daily_trends_come_from_the_rollup_of_cleared_alarms(evening: Evening) -> None:
    days = await trends(evening.db, bucket=Bucket.DAY, now=to_datetime(NOW))
    assert [(p.start.day, p.total, p.critical, p.major, p.warning) for p in days][-2:] == [
        (17, 0, 0, 0, 0),
        (18, 5, 3, 1, 1),
    ]
    # A, B and E are cleared (rolled up); C and D are open and counted live
    rolled = "SELECT day::text, kind, severity, grid_id, alarms FROM alarm_days ORDER BY grid_id"
    assert await rows(evening, rolled) == [
        ("2026-11-18", "smoke.fire", "critical", "RJ-G1-M01", 2),
        ("2026-11-18", "smoke.fire", "critical", "RJ-G1-M02", 1),
    ]
    hourly = await trends(evening.db, bucket=Bucket.HOUR, now=to_datetime(NOW))
    assert sum(p.total for p in hourly) == 5  # the hourly trend is always live
    fires = await trends(evening.db, bucket=Bucket.DAY, now=to_datetime(NOW), grids=["RJ-G1-M02"])
    assert fires[-1].total == 3
    # a partial first day (from noon) is live, the whole ones rolled up: the same counts
    since = datetime(2026, 11, 17, 12, tzinfo=CHINA_TZ)
    part = await trends(evening.db, bucket=Bucket.DAY, now=to_datetime(NOW), since=since)
    assert [(p.start.day, p.total) for p in part] == [(17, 0), (18, 5)]
