"""Daily rollups of finished tickets and alarms, advanced by the read side (migration 0021).

A resolved ticket's assessment and a cleared alarm's kind, severity, grid and day never change again,
so each is added once to its day's row (`ticket_days`, `alarm_days`) in order of the time it finished,
up to a watermark (`stats_marks.through`). A window of whole local days is then read from the rollup,
plus, live, what is still open and what finished after the watermark; the partial days at a window's
edges are always live. Each finished row is in exactly one of the two parts, so the sum is exact.

The watermark advances to `MARGIN` before the reader's clock, never closer: a ticket resolved by a
process whose clock lags, or in a transaction that commits late, still finishes after the watermark and
is counted live, then rolled up by a later advance. Advancing takes a row lock on its mark, so
concurrent readers (several API processes) roll each row up once. The first advance on a database with
history rolls up all of it at once (a few seconds for a street-year); later ones add a minute's worth.
`now` must not go backwards between calls on one database: a rollup cannot answer "as of" the past.

The screens' queries over time ranges run with `prepare=False`: psycopg prepares a statement on its
fifth run on a connection, and PostgreSQL's generic plan for it, blind to the range and the watermark,
scans whole tables (measured: 30 ms custom, 400 ms generic for a year of tickets).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from alerts.store import Conn
from stats.timeliness import MEASURES, TICKET_TIMELINESS
from whistle.timeutil import CHINA_TZ

MARGIN = timedelta(minutes=5)  # clock skew between processes and slow commits stay behind it
STEP = timedelta(minutes=1)  # advance at most this often (a reader a second later finds it fresh)
ROLLED = tuple(m for m in MEASURES if m != "open")  # a resolved ticket is never open


def local_day(column: str) -> str:
    """SQL: the local (Asia/Shanghai, UTC+8) calendar day of a timestamptz column."""
    return f"(({column} + interval '8 hours') AT TIME ZONE 'UTC')::date"


@dataclass(frozen=True, slots=True)
class WholeDays:
    """The whole local days inside a window: [start, end) as instants and [first, last + 1) as dates."""

    start: datetime
    end: datetime

    @property
    def first(self) -> date:
        return self.start.astimezone(CHINA_TZ).date()

    @property
    def stop(self) -> date:
        return self.end.astimezone(CHINA_TZ).date()


def whole_days(since: datetime, until: datetime) -> WholeDays | None:
    """The local days that lie wholly inside [since, until), or None if there are none."""
    s = since.astimezone(CHINA_TZ)
    start = s.replace(hour=0, minute=0, second=0, microsecond=0)
    if start < s:
        start += timedelta(days=1)
    end = until.astimezone(CHINA_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return WholeDays(start, end) if start < end else None


_TICKETS_INCREMENT = (
    "INSERT INTO ticket_days (day, grid_id, assignee_id, {cols}) "
    "SELECT {day}, COALESCE(grid_id, ''), COALESCE(assignee_id, ''), {measures} FROM ({timeliness} "
    "WHERE t.resolved_at >= %(mark)s AND t.resolved_at < %(target)s) per GROUP BY 1, 2, 3 "
    "ON CONFLICT (day, grid_id, assignee_id) DO UPDATE SET {sums}"
).format(
    cols=", ".join(ROLLED),
    day=local_day("created_at"),
    measures=", ".join(MEASURES[m] for m in ROLLED),
    timeliness=TICKET_TIMELINESS,
    sums=", ".join(f"{m} = ticket_days.{m} + EXCLUDED.{m}" for m in ROLLED),
)

_ALARMS_INCREMENT = (
    "INSERT INTO alarm_days (day, kind, severity, grid_id, alarms) "
    f"SELECT {local_day('detected_at')}, kind, severity, COALESCE(grid_id, ''), count(*) FROM alarms "
    "WHERE cleared_at >= %(mark)s AND cleared_at < %(target)s "
    "GROUP BY 1, 2, 3, 4 "
    "ON CONFLICT (day, kind, severity, grid_id) DO UPDATE SET alarms = alarm_days.alarms + EXCLUDED.alarms"
)


async def _advance(conn: Conn, name: str, increment: str, now: datetime) -> bool:
    """Roll up what finished between the mark and `now - MARGIN`, if the mark is more than STEP behind."""
    target = now - MARGIN
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT through < %s, {_FLOORED} FROM stats_marks WHERE name = %s FOR UPDATE", (target - STEP, name)
        )
        row = await cur.fetchone()
        if row is None or not row[0]:
            return False
        await conn.execute(increment, {"mark": row[1], "target": target, "now": target}, prepare=False)
        await conn.execute("UPDATE stats_marks SET through = %s WHERE name = %s", (target, name))
    return True


# The mark as a value the driver can read ('-infinity' before the first advance is not a datetime).
_FLOORED = "GREATEST(through, '1970-01-01 00:00+00'::timestamptz)"


async def watermark(conn: Conn, name: str) -> datetime:
    """The mark, to pass to the reading query as a value (the planner then sees how recent it is)."""
    cur = await conn.execute(f"SELECT {_FLOORED} FROM stats_marks WHERE name = %s", (name,))
    row = await cur.fetchone()
    assert row is not None, f"stats_marks has no {name} (migration 0021)"
    value: datetime = row[0]
    return value


async def advance_tickets(conn: Conn, now: datetime) -> bool:
    """Add the tickets resolved since the mark to ticket_days; True if the mark moved."""
    return await _advance(conn, "tickets", _TICKETS_INCREMENT, now)


async def advance_alarms(conn: Conn, now: datetime) -> bool:
    """Add the alarms cleared since the mark to alarm_days; True if the mark moved."""
    return await _advance(conn, "alarms", _ALARMS_INCREMENT, now)
