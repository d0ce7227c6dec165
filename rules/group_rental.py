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
3. **Both utilities, and night life.** A day is suspicious only when water *and* power are both
   far above what the registration explains and above the neighbours, and the household is not
   dark at night (00:00–05:00 use at least a fraction of its building's usual night share):
   a shop run from a flat burns power by day but is dark at night and uses little water; a large
   registered family is explained by its registration; a family with one or two unregistered
   members stays under `min_extra_occupants`.
4. **Persistence.** A lead is raised when at least `min_days` of the last `window_days` days were
   suspicious (12 of 14 by default): relatives visiting for a week do not make a lead.
5. **Explanation.** Every lead carries the numbers a grid worker needs at the door: water and
   energy per day against what the registration explains, the multiple of the building median,
   the night share, and how many days of the window.

A visit outcome of `false_alarm` suppresses a household for `suppress_days`, unless its score
later exceeds `worsen_factor` times the score it had when it was dismissed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

F = NDArray[np.float64]


class GroupRentalParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    water_l_per_person: float = Field(default=125.0, gt=0, description="DOMAIN.md: urban household use per person")
    kwh_per_person: float = Field(default=1.7, gt=0, description="DOMAIN.md: residential electricity per person")
    min_ratio: float = Field(default=2.5, gt=1, description="implied occupants over registered, both utilities")
    min_extra_occupants: float = Field(default=3.5, gt=0, description="implied minus registered, by water")
    min_peer_z: float = Field(default=3.0, gt=0, description="robust z against the building's households")
    min_night_fraction: float = Field(default=0.5, ge=0, description="of the building's median night share")
    window_days: int = Field(default=14, ge=3)
    min_days: int = Field(default=12, ge=1)
    min_peers: int = Field(default=5, ge=2, description="below this many, compare with the residential area")
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


def daily_suspicion(f: HouseholdDays, p: GroupRentalParams) -> tuple[NDArray[np.bool_], dict[str, F]]:
    """Which household-days look like far more occupants than registered; with the intermediate figures."""
    reg = np.maximum(f.registered, 1).astype(np.float64)[:, None]
    implied_w = f.water_l / p.water_l_per_person
    implied_e = f.kwh / p.kwh_per_person
    wpc = f.water_l / reg
    epc = f.kwh / reg
    z_w, med_w = robust_z(wpc, f.building, p.min_peers, f.area)
    z_e, med_e = robust_z(epc, f.building, p.min_peers, f.area)
    night = np.where(np.isnan(f.night_water_share), 0.0, f.night_water_share)
    night_med = np.zeros_like(night)
    for b in np.unique(f.building):
        rows = np.flatnonzero(f.building == b)
        with np.errstate(all="ignore"):
            night_med[rows] = np.nanmedian(f.night_water_share[rows], axis=0)
    night_med = np.where(np.isnan(night_med), 0.0, night_med)
    with np.errstate(invalid="ignore"):
        suspicious = (
            (implied_w >= p.min_ratio * reg)
            & (implied_e >= p.min_ratio * reg * 0.8)  # power rises less than water with people (shared appliances)
            & (implied_w - reg >= p.min_extra_occupants)
            & (z_w >= p.min_peer_z)
            & (z_e >= p.min_peer_z * 0.5)
            & (night >= p.min_night_fraction * night_med)
        )
    suspicious &= ~np.isnan(f.water_l) & ~np.isnan(f.kwh)
    score = np.sqrt(np.maximum(implied_w, 0) * np.maximum(implied_e, 0)) / reg
    return suspicious, {
        "implied_w": implied_w,
        "implied_e": implied_e,
        "z_w": z_w,
        "z_e": z_e,
        "med_w": med_w,
        "med_e": med_e,
        "score": score,
        "night_med": night_med,
    }


def leads(
    f: HouseholdDays,
    p: GroupRentalParams,
    *,
    day_index: int | None = None,
    dismissed: Mapping[str, tuple[int, float]] | None = None,
) -> list[Lead]:
    """Households whose window ending at `day_index` (default: the last day) makes a lead.

    `dismissed` maps a household id to (day index of a `false_alarm` visit, score at that time).
    """
    if not p.enabled or not len(f.household_ids):
        return []
    d = len(f.days) - 1 if day_index is None else day_index
    lo = max(0, d - p.window_days + 1)
    sus, x = daily_suspicion(f, p)
    window = sus[:, lo : d + 1]
    count = window.sum(axis=1)
    out: list[Lead] = []
    for h in np.flatnonzero(count >= p.min_days).tolist():
        days = np.flatnonzero(window[h]) + lo
        score = float(np.median(x["score"][h, days]))
        hid = f.household_ids[h]
        if dismissed and hid in dismissed:
            at, old = dismissed[hid]
            if d - at < p.suppress_days and score < p.worsen_factor * old:
                continue
        reg = int(max(f.registered[h], 1))
        water = float(np.median(f.water_l[h, days]))
        kwh = float(np.median(f.kwh[h, days]))
        med_w = float(np.nanmedian(x["med_w"][h, days]))
        med_e = float(np.nanmedian(x["med_e"][h, days]))
        night = float(np.nanmedian(f.night_water_share[h, days]))
        expected_w = reg * p.water_l_per_person
        evidence = {
            "registered_occupants": int(f.registered[h]),
            "water_m3_per_day": round(water / 1000, 2),
            "water_m3_expected": round(expected_w / 1000, 2),
            "kwh_per_day": round(kwh, 1),
            "kwh_expected": round(reg * p.kwh_per_person, 1),
            "implied_occupants": round(water / p.water_l_per_person, 1),
            "water_vs_building_median": round((water / reg) / med_w, 1) if med_w > 0 else None,
            "kwh_vs_building_median": round((kwh / reg) / med_e, 1) if med_e > 0 else None,
            "night_share": round(night, 3),
            "days_flagged": len(days),
            "window_days": int(d - lo + 1),
            "first_day": f.days[int(days[0])],
            "last_day": f.days[d],
            "summary": (
                f"water {water / 1000:.2f} m³/day vs {expected_w / 1000:.2f} expected for {int(f.registered[h])}"
                f" registered; {(water / reg) / med_w if med_w > 0 else float('nan'):.1f}x building median;"
                f" {kwh:.1f} kWh/day; {len(days)} of {d - lo + 1} days"
            ),
        }
        out.append(Lead(hid, f.days[d], round(score, 2), evidence))
    return out
