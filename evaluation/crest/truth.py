"""Ground-truth records (incidents and confounders) and the run's clock."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

LOCAL = dt.timezone(dt.timedelta(hours=8))
MS_PER_MIN = 60_000


@dataclass(frozen=True)
class Clock:
    """Minutes of the run (0 = local midnight of the first day, Asia/Shanghai) to epoch ms and RFC 3339."""

    first_day: dt.date

    @property
    def t0_ms(self) -> int:
        start = dt.datetime(self.first_day.year, self.first_day.month, self.first_day.day, tzinfo=LOCAL)
        return int(start.timestamp()) * 1000

    def ms(self, minute: int) -> int:
        return self.t0_ms + int(minute) * MS_PER_MIN

    def iso(self, minute: int) -> str:
        return dt.datetime.fromtimestamp(self.ms(minute) / 1000, tz=LOCAL).isoformat()


@dataclass(frozen=True)
class Record:
    """One incident (kind = an alarm kind) or confounder (kind = ``confounder.*``); times in run minutes."""

    kind: str
    subject_type: str
    subject_ids: tuple[str, ...]
    start: int
    end: int | None
    confounder: bool
    could_be_mistaken_for: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)
    declared: bool | None = None

    def to_json(self, clock: Clock, run_end: int) -> dict[str, Any]:
        end = None if self.end is None or self.end > run_end else clock.ms(self.end)
        obj: dict[str, Any] = {
            "kind": self.kind,
            "subject_type": self.subject_type,
            "subject_ids": list(self.subject_ids),
            "start": clock.ms(self.start),
            "end": end,
            "confounder": self.confounder,
            "could_be_mistaken_for": list(self.could_be_mistaken_for),
        }
        if self.declared is not None:
            obj["declared"] = self.declared
        obj["details"] = self.details
        return obj


LONE_ELDER = "household.lone_elder_inactive"
GROUP_RENTAL = "household.group_rental_suspected"
EBIKE = "ebike.indoor_charging"
FLOW = "water.continuous_flow"
