"""Alarms per hour or per local day, by severity, over a window: the screen's 24-hour and 7-day trends.

Buckets are aligned to local time (Asia/Shanghai, UTC+8 without daylight saving: `date_bin` from a
local midnight), counted by detection (wall) time, and every bucket of the window is returned, empty
ones with zeros, so a chart never skips an hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from psycopg.rows import dict_row

from stats.rollups import advance_alarms, watermark, whole_days
from stats.summary import local_midnight
from whistle.domain import AlarmKind, Severity
from whistle.errors import Invalid
from whistle.store.db import Database
from whistle.timeutil import CHINA_TZ

_ORIGIN = datetime(2000, 1, 3, tzinfo=CHINA_TZ)  # a local midnight (a Monday)


class Bucket(StrEnum):
    HOUR = "hour"
    DAY = "day"

    @property
    def width(self) -> timedelta:
        return timedelta(hours=1) if self is Bucket.HOUR else timedelta(days=1)

    @property
    def max_buckets(self) -> int:
        """At most a month of hours or a year and a bit of days per request."""
        return 24 * 31 if self is Bucket.HOUR else 400


@dataclass(frozen=True, slots=True)
class TrendPoint:
    start: datetime
    total: int
    critical: int
    major: int
    minor: int
    warning: int


def floor_to(at: datetime, bucket: Bucket) -> datetime:
    """The start of the bucket `at` falls in (local hours, local days)."""
    return local_midnight(at) + (
        timedelta(hours=at.astimezone(CHINA_TZ).hour) if bucket is Bucket.HOUR else timedelta()
    )


def window(
    bucket: Bucket, *, now: datetime, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime, int]:
    """(first bucket start, end, buckets). `until` is exclusive; without it the window ends with the bucket
    `now` is in. Without `since` it holds 24 hours or 7 local days, the current one included."""
    if until is not None:
        last = floor_to(until - timedelta(microseconds=1), bucket)
        end = until
    else:
        last = floor_to(now, bucket)
        end = last + bucket.width
    default_n = 24 if bucket is Bucket.HOUR else 7
    first = floor_to(since, bucket) if since is not None else last - bucket.width * (default_n - 1)
    if last < first or end <= first:
        raise Invalid("until must be after since")
    n = (last - first) // bucket.width + 1
    if n > bucket.max_buckets:
        raise Invalid(f"at most {bucket.max_buckets} {bucket.value} buckets per request")
    return first, end, n


async def trends(
    db: Database,
    *,
    bucket: Bucket,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: AlarmKind | None = None,
    grids: Sequence[str] | None = None,
) -> list[TrendPoint]:
    """Alarms detected per bucket of the window, by severity, with zero buckets filled in."""
    first, end, n = window(bucket, now=now, since=since, until=until)
    filters = (" AND kind = %(kind)s" if kind is not None else "") + (
        " AND grid_id = ANY(%(grids)s)" if grids is not None else ""
    )
    args: dict[str, object] = {
        "width": bucket.width,
        "origin": _ORIGIN,
        "first": first,
        "end": end,
        "kind": kind.value if kind else None,
        "grids": list(grids or ()),
    }
    binned = "SELECT date_bin(%(width)s, detected_at, %(origin)s) AS start, severity, count(*) AS n FROM alarms WHERE "
    days = whole_days(first, end) if bucket is Bucket.DAY else None
    if days is None:
        sql = f"{binned}detected_at >= %(first)s AND detected_at < %(end)s{filters} GROUP BY 1, 2"
    else:
        # whole days from the rollup of cleared alarms; open ones, those cleared since its watermark and the
        # partial days at the edges live
        args.update(start=days.start, stop_at=days.end, day0=days.first, day1=days.stop)
        live = [
            "detected_at >= %(first)s AND detected_at < %(start)s",
            "detected_at >= %(stop_at)s AND detected_at < %(end)s",
            "detected_at >= %(start)s AND detected_at < %(stop_at)s AND status <> 'cleared'",
            "detected_at >= %(start)s AND detected_at < %(stop_at)s AND cleared_at >= %(mark)s",
        ]
        rolled = (
            "SELECT (day::timestamp - interval '8 hours') AT TIME ZONE 'UTC' AS start, severity, sum(alarms) AS n "
            f"FROM alarm_days WHERE day >= %(day0)s AND day < %(day1)s{filters} GROUP BY 1, 2"
        )
        parts = [f"{binned}{w}{filters} GROUP BY 1, 2" for w in live] + [rolled]
        sql = "SELECT start, severity, sum(n)::int AS n FROM (" + " UNION ALL ".join(parts) + ") x GROUP BY 1, 2"
    async with db.connection() as conn:
        if days is not None:
            await advance_alarms(conn, now)
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the mark and the rows agree
            if days is not None:
                args["mark"] = await watermark(conn, "alarms")
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(sql, args, prepare=False)
                rows = await cur.fetchall()
    counts: dict[datetime, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["start"], {})[r["severity"]] = r["n"]
    out: list[TrendPoint] = []
    for i in range(n):
        at = first + bucket.width * i
        c = counts.get(at, {})
        sev = {s.value: c.get(s.value, 0) for s in Severity}
        out.append(TrendPoint(start=at.astimezone(CHINA_TZ), total=sum(sev.values()), **sev))
    return out
