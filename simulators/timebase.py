"""Simulated time: local (+08:00) days, the seq anchor, and parsing `--start`."""

from __future__ import annotations

import re
from datetime import date, datetime

from whistle.timeutil import CHINA_TZ, DAY_MS, LOCAL_OFFSET_MS, MINUTE_MS, from_datetime, parse_rfc3339

SLOT_MS = 15 * MINUTE_MS
# seq numbers count intervals from here, so two runs over the same time give the same seq
ANCHOR_MS = from_datetime(datetime(2020, 1, 1, tzinfo=CHINA_TZ))


def day_start(day: int) -> int:
    """Local midnight opening day number `day`, in ms since the epoch."""
    return day * DAY_MS - LOCAL_OFFSET_MS


def weekday(day: int) -> int:
    """Monday 0 … Sunday 6 (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def day_of_year(day: int) -> int:
    """0-based day of the year of local day `day`."""
    d = date.fromordinal(date(1970, 1, 1).toordinal() + day)
    return d.timetuple().tm_yday - 1


def floor_to(ms: int, step_ms: int) -> int:
    return ms - ms % step_ms


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_start(text: str) -> int:
    """`--start`: an RFC 3339 instant with an offset, or a date meaning its local midnight (+08:00)."""
    text = text.strip()
    if _DATE.match(text):
        return from_datetime(datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ))
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise ValueError(f"--start must be RFC 3339 with an offset or YYYY-MM-DD, got {text!r}") from exc
