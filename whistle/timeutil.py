"""Event time as integer milliseconds since the epoch (UTC), and its RFC 3339 forms."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
LOCAL_OFFSET_MS = 8 * HOUR_MS  # Asia/Shanghai: UTC+8, no daylight saving
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def local_day(ms: int) -> int:
    """The local (Asia/Shanghai) calendar day number of an instant (days since 1970-01-01)."""
    return (ms + LOCAL_OFFSET_MS) // DAY_MS


def local_hour(ms: int) -> int:
    """The local (Asia/Shanghai) hour of the day of an instant, 0-23."""
    return (ms + LOCAL_OFFSET_MS) // HOUR_MS % 24


def to_datetime(ms: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def from_datetime(dt: datetime) -> int:
    """An aware datetime as milliseconds since the epoch."""
    if dt.tzinfo is None:
        raise ValueError("datetime without a UTC offset")
    return (dt - _EPOCH) // _MS


def format_ms(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. 2026-11-24T00:15:00.000Z."""
    return to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp that carries an offset (or Z) into milliseconds."""
    dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return from_datetime(dt)
