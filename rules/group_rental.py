"""Suspected group rental (疑似群租): water and power against registered occupancy and the neighbours.

The model works on daily features per household in local time (Asia/Shanghai), all households of
a district at once, vectorised with numpy:

1. **Against the norm for the registered occupants.** Implied occupants are the day's water over
   the per-person norm (125 L/day, DOMAIN.md) and the day's energy over its norm (1.7 kWh). A
   flat registered for 2 where 9 people live draws water for 9.
2. **Against the neighbours.** Water and energy per registered occupant are compared with the other
   households of the same building (and of the residential area when the building has too few)
   by a robust z-score, (x − median) / (1.4826 · MAD), so a building of big users or a hot week
   does not flag everyone.
3. **Night life, or sheer volume.** A flat is suspicious when it holds more people than its
   registration explains, and by more than a lodger: water `min_ratio` (1.8x) the registration's norm
   and `min_excess_occupants` (1.5) people beyond it, or power `min_power_ratio` (2x) and
   `min_power_excess_occupants` (2.5) people beyond it (tenants cook little but each power a
   partitioned room; one person with a heater and an e-bike charger also draws twice the norm, so the
   power must imply a crowd), above the neighbours, *and* there is life at night on many nights of the
   window: at least `min_night_days` (4) nights where `min_night_share` of the day's water was drawn
   00:00-05:00, on at least `min_days` of the window's days. Tenants on shifts come and go at night,
   night after night; families sleep, and a tap left running or a cleaning day is one night, not a
   habit. Or when water (2.5x) and power (1.5x) are both far above the registration and the neighbours
   (`heavy_*`) and the flat is not dark on a typical night (median day's night share). A shop run from a
   flat uses water and power by day but is dark at night; a large registered family is explained by its
   registration; a family with an unregistered member, a lodger, a shift worker living alone, relatives
   for a week are one or two people more, or not for long.
4. **Persistence.** The window figures are medians of the days, night life must hold on
   `min_night_days` nights and the water above `day_ratio` on `min_days` (9) of the last `window_days`
   (14) days. An open lead stays open while the water stays `hold_ratio` (1.5x) above the registration and
   above the neighbours, so one quieter day does not clear a lead only for it to be raised again the next.
   On the tuning sources (scripts/tune_models.py, not the figures of record) every group rental that had
   been crowded for 13 days was a lead on both; the CREST source's shift workers, single heavy power
   users, lodgers and week-long visitors, which the earlier thresholds (water 1.3x or power 2x on 5
   nights) made leads, are not.
5. **Explanation.** Every lead carries the numbers a grid worker needs at the door: water and
   energy per day against what the registration explains, the multiple of the building median,
   the night share of a typical day, on how many nights, how many days of the window, the
   busiest 15 minutes of a typical day against the building's (concurrency: ten people shower in
   the same hour) and the weekend's water against the weekdays'. The last two explain; they do
   not decide.

A visit outcome of `false_alarm` suppresses a household for `suppress_days`, unless its score
later exceeds `worsen_factor` times the score it had when it was dismissed.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

F = NDArray[np.float64]


class GroupRentalParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    water_l_per_person: float = Field(default=125.0, gt=0, description="DOMAIN.md: urban household use per person")
    kwh_per_person: float = Field(default=1.7, gt=0, description="DOMAIN.md: residential electricity per person")
    # a crowded flat where people come and go at night (shift workers): excess water, night life
    min_ratio: float = Field(default=1.8, gt=0, description="window water over what the registration explains")
    min_power_ratio: float = Field(
        default=2.0, gt=0, description="or window power over the registration's (tenants each power a room)"
    )
    min_night_share: float = Field(default=0.06, ge=0, description="a night: this share of the day's water 00:00-05:00")
    min_night_days: int = Field(default=4, ge=1, description="nights of the window with night life (a leak is one)")
    min_excess_occupants: float = Field(
        default=1.5, ge=0, description="people beyond the registration the water implies: not one lodger"
    )
    min_power_excess_occupants: float = Field(
        default=2.5, ge=0, description="and the power, when it is the power that is crowded (a heater, a charger)"
    )
    min_peer_z: float = Field(default=1.0, description="robust z per registered occupant in the building")
    # a crowded flat by sheer volume: both utilities far above registration and neighbours
    heavy_ratio: float = Field(default=2.5, gt=0)
    heavy_power_ratio: float = Field(default=1.5, gt=0)
    heavy_peer_z: float = Field(default=3.0)
    heavy_night_share: float = Field(
        default=0.02, ge=0, description="even then, not dark on a typical night (median day; a shop is dark)"
    )
    day_ratio: float = Field(default=1.2, gt=0, description="a day with water above this ratio counts as a day")
    window_days: int = Field(default=14, ge=3)
    min_days: int = Field(default=9, ge=1, description="days with readings; for volume, days above day_ratio")
    min_peers: int = Field(default=5, ge=2, description="below this many, compare with the residential area")
    hold_ratio: float = Field(
        default=1.5, gt=0, description="a lead stays open while the water stays this far above the registration"
    )
    suppress_days: int = Field(default=90, ge=0)
    worsen_factor: float = Field(default=1.5, gt=1)


@dataclass(frozen=True, slots=True)
class HouseholdDays:
    """Daily features, households × days. NaN where a day is not covered by readings."""

    household_ids: Sequence[str]
    registered: NDArray[np.int64]  # (H,)
    building: NDArray[np.int64]  # (H,) index of the building
    area: NDArray[np.int64]  # (H,) index of the residential area
    days: Sequence[str]  # (D,) local dates, ISO
    water_l: F  # (H, D)
    kwh: F  # (H, D)
    night_water_share: F  # (H, D) share of the day's water drawn 00:00–05:00
    night_kwh_share: F  # (H, D)
    peak_water_l: F | None = None  # (H, D) litres in the day's busiest 15 minutes (concurrency)
    peak_kw: F | None = None  # (H, D) mean kW over the day's busiest 15 minutes


@dataclass(frozen=True, slots=True)
class Lead:
    """A household to visit, with the numbers behind it."""

    household_id: str
    day: str
    score: float
    evidence: Mapping[str, object]


def robust_z(x: F, groups: NDArray[np.int64], min_peers: int, fallback: NDArray[np.int64]) -> tuple[F, F]:
    """Per column (day), (x − group median) / (1.4826 · MAD) and the group median; groups with too few
    valid members use the `fallback` grouping instead. NaN stays NaN."""
    z = np.full_like(x, np.nan)
    med = np.full_like(x, np.nan)
    for grouping, only_small in ((fallback, False), (groups, True)):
        for g in np.unique(grouping):
            rows = np.flatnonzero(grouping == g)
            block = x[rows]
            valid = np.sum(~np.isnan(block), axis=0)
            if only_small:
                use = valid >= min_peers
                if not use.any():
                    continue
            else:
                use = valid >= 2
            with np.errstate(all="ignore"):
                m = np.nanmedian(np.where(use, block, np.nan), axis=0) if block.size else np.array([])
                mad = np.nanmedian(np.abs(block - m), axis=0) * 1.4826
                # A floor on the spread: a building of identical flats must not turn small differences huge.
                mad = np.maximum(mad, 0.15 * np.abs(m) + 1e-9)
                zz = (block - m) / mad
            cols = np.flatnonzero(use)
            z[np.ix_(rows, cols)] = zz[:, cols]
            med[np.ix_(rows, cols)] = np.broadcast_to(m, block.shape)[:, cols]
    return z, med


def window_figures(f: HouseholdDays, p: GroupRentalParams, lo: int, hi: int) -> dict[str, F]:
    """Per household, the window [lo, hi) summarised: medians of the daily ratios, the night share of
    the window's water, the robust z against the building, and how many days were above `day_ratio`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: households without data
        return _window_figures(f, p, lo, hi)


def _window_figures(f: HouseholdDays, p: GroupRentalParams, lo: int, hi: int) -> dict[str, F]:
    reg = np.maximum(f.registered, 1).astype(np.float64)
    water = f.water_l[:, lo:hi]
    kwh = f.kwh[:, lo:hi]
    with np.errstate(all="ignore"):
        ratio_days = water / p.water_l_per_person / reg[:, None]
        ratio = np.nanmedian(ratio_days, axis=1)
        power_ratio = np.nanmedian(kwh / p.kwh_per_person / reg[:, None], axis=1)
        # Night life per day, on the days with readings: the median day's night share and how many nights
        # had a real share of the water. One night of a running tap (a few hundred litres at 3 a.m.) would
        # dominate a share of the window's total; it moves neither the median nor the count of nights.
        share = np.where(np.isnan(water), np.nan, np.nan_to_num(f.night_water_share[:, lo:hi]))
        night = np.nan_to_num(np.nanmedian(share, axis=1))
        night_days = np.sum(np.nan_to_num(share) >= p.min_night_share, axis=1)
        wpc = np.nanmedian(water, axis=1) / reg
        epc = np.nanmedian(kwh, axis=1) / reg
    z_w, med_w = robust_z(wpc[:, None], f.building, p.min_peers, f.area)
    z_e, med_e = robust_z(epc[:, None], f.building, p.min_peers, f.area)
    days = np.sum(ratio_days >= p.day_ratio, axis=1)
    # Explanation only (the decision above does not use them): concurrency — the median day's busiest
    # 15 minutes, against the building's — and the weekend against the weekdays.
    n = len(f.household_ids)
    peak = np.full(n, np.nan)
    peak_vs = np.full(n, np.nan)
    if f.peak_water_l is not None:
        with np.errstate(all="ignore"):
            peak = np.nanmedian(f.peak_water_l[:, lo:hi], axis=1)
        _, med_p = robust_z(peak[:, None], f.building, p.min_peers, f.area)
        with np.errstate(all="ignore"):
            peak_vs = peak / med_p[:, 0]
    weekend = np.array([date.fromisoformat(d).weekday() >= 5 for d in f.days[lo:hi]], dtype=bool)
    with np.errstate(all="ignore"):
        week_ratio = (
            np.nanmedian(water[:, weekend], axis=1) / np.nanmedian(water[:, ~weekend], axis=1)
            if weekend.any() and (~weekend).any()
            else np.full(n, np.nan)
        )
    return {
        "ratio": ratio,
        "power_ratio": power_ratio,
        "night": night,
        "night_days": night_days.astype(np.float64),
        "z_w": z_w[:, 0],
        "z_e": z_e[:, 0],
        "med_w": med_w[:, 0],
        "med_e": med_e[:, 0],
        "days": days.astype(np.float64),
        "water": np.nanmedian(water, axis=1),
        "kwh": np.nanmedian(kwh, axis=1),
        "valid": np.sum(~np.isnan(water) & ~np.isnan(kwh), axis=1).astype(np.float64),
        "peak": peak,
        "peak_vs": peak_vs,
        "week_ratio": week_ratio,
    }


def _num(v: float, digits: int) -> float | None:
    """A figure for the evidence: rounded, or None where it could not be computed."""
    return None if not np.isfinite(v) else round(float(v), digits)


def leads(
    f: HouseholdDays,
    p: GroupRentalParams,
    *,
    day_index: int | None = None,
    dismissed: Mapping[str, tuple[int, float]] | None = None,
    holding: Collection[str] = (),
) -> list[Lead]:
    """Households whose window ending at `day_index` (default: the last day) makes a lead.

    `dismissed` maps a household id to (day index of a `false_alarm` visit, score at that time). `holding` are
    the households whose lead is open: one stays a lead while its water stays `hold_ratio` above the registration
    and above the neighbours (a lead does not clear and come back with a day's noise).
    """
    if not p.enabled or not len(f.household_ids):
        return []
    d = len(f.days) - 1 if day_index is None else day_index
    lo = max(0, d - p.window_days + 1)
    x = window_figures(f, p, lo, d + 1)
    with np.errstate(invalid="ignore"):
        enough = x["valid"] >= p.min_days
        # more people than registered: water, or power (tenants cook little but each power a room),
        # above what the registration explains and above the neighbours' per registered occupant
        registered = np.maximum(f.registered, 1).astype(np.float64)
        # more people than registered: water, or power (tenants cook little but each power a room), above what
        # the registration explains, above the neighbours' per registered occupant, and by more than a lodger
        by_water = (x["ratio"] >= p.min_ratio) & (x["z_w"] >= p.min_peer_z)
        by_water &= (x["ratio"] - 1) * registered >= p.min_excess_occupants
        by_power = (x["power_ratio"] >= p.min_power_ratio) & (x["z_e"] >= p.min_peer_z)
        by_power &= (x["power_ratio"] - 1) * registered >= p.min_power_excess_occupants
        night_life = (by_water | by_power) & (x["night_days"] >= p.min_night_days) & (x["days"] >= p.min_days)
        volume = (
            (x["days"] >= p.min_days)
            & (x["ratio"] >= p.heavy_ratio)
            & (x["power_ratio"] >= p.heavy_power_ratio)
            & (x["z_w"] >= p.heavy_peer_z)
            & (x["night"] >= p.heavy_night_share)
        )
        volume &= (x["ratio"] - 1) * registered >= p.min_excess_occupants
        held = np.zeros(len(f.household_ids), dtype=bool)
        if holding:
            held[[i for i, h in enumerate(f.household_ids) if h in set(holding)]] = True
        held &= (x["ratio"] >= p.hold_ratio) & (x["z_w"] >= p.min_peer_z)
        hit = enough & (night_life | volume | held)
    out: list[Lead] = []
    for h in np.flatnonzero(hit).tolist():
        hid = f.household_ids[h]
        reg = int(max(f.registered[h], 1))
        score = float(np.sqrt(max(x["ratio"][h], 0) * max(x["power_ratio"][h], 0)) * (1 + 5 * x["night"][h]))
        if dismissed and hid in dismissed:
            at, old = dismissed[hid]
            if d - at < p.suppress_days and score < p.worsen_factor * old:
                continue
        water, kwh = float(x["water"][h]), float(x["kwh"][h])
        med_w, med_e = float(x["med_w"][h]), float(x["med_e"][h])
        expected_w = reg * p.water_l_per_person
        n_days, n_nights, span = int(x["days"][h]), int(x["night_days"][h]), d - lo + 1
        vs_median = (water / reg) / med_w if med_w > 0 else float("nan")
        peak, peak_vs = _num(x["peak"][h], 1), _num(x["peak_vs"][h], 1)
        evidence = {
            "registered_occupants": int(f.registered[h]),
            "water_m3_per_day": round(water / 1000, 2),
            "water_m3_expected": round(expected_w / 1000, 2),
            "kwh_per_day": round(kwh, 1),
            "kwh_expected": round(reg * p.kwh_per_person, 1),
            "implied_occupants": round(water / p.water_l_per_person, 1),
            "water_vs_building_median": round(vs_median, 1) if med_w > 0 else None,
            "kwh_vs_building_median": round((kwh / reg) / med_e, 1) if med_e > 0 else None,
            "night_share": round(float(x["night"][h]), 3),
            "nights_active": n_nights,
            "peak_15min_water_l": peak,
            "peak_vs_building_median": peak_vs,
            "weekend_vs_weekday_water": _num(x["week_ratio"][h], 2),
            "pattern": "night_life" if bool(night_life[h]) else "volume" if bool(volume[h]) else "holding",
            "days_flagged": n_days,
            "window_days": span,
            "first_day": f.days[lo],
            "last_day": f.days[d],
            "summary": (
                f"water {water / 1000:.2f} m³/day vs {expected_w / 1000:.2f} expected for {int(f.registered[h])}"
                f" registered; {vs_median:.1f}x building median; {100 * float(x['night'][h]):.0f} % of it at"
                f" night on a typical day, night life on {n_nights} of {span} nights; {kwh:.1f} kWh/day vs"
                f" {reg * p.kwh_per_person:.1f} expected;"
                f" {n_days} of {span} days above the registration's water"
                + (f"; busiest 15 min {peak:.0f} L ({peak_vs:.1f}x building median)" if peak and peak_vs else "")
            ),
        }
        out.append(Lead(hid, f.days[d], round(score, 2), evidence))
    return out
