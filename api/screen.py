"""How this deployment's screen is configured: an optional self-hosted basemap, the poll interval, the
low-battery threshold (from `WHISTLE_SCREEN_*` and `WHISTLE_LOW_BATTERY_PCT`)."""

from __future__ import annotations

from dataclasses import dataclass

from stats.geo import Crs
from whistle.settings import Settings


@dataclass(frozen=True, slots=True)
class ScreenOptions:
    tiles_url: str | None = None  # XYZ template, e.g. http://tiles.local/{z}/{x}/{y}.png
    tiles_crs: Crs = Crs.GCJ02  # Chinese basemaps are drawn in GCJ-02
    poll_s: float = 15.0  # the page polls this often when the live socket is down (and as a safety net)
    low_battery_pct: float = 20.0

    @classmethod
    def from_settings(cls, s: Settings) -> ScreenOptions:
        return cls(
            tiles_url=s.screen_tiles_url or None,
            tiles_crs=Crs(s.screen_tiles_crs),
            poll_s=s.screen_poll_s,
            low_battery_pct=s.low_battery_pct,
        )
