"""Outside global irradiance for CREST's lighting model: Shanghai's clear sky times a cloud state per day.

CREST drives lamps from external global horizontal irradiance against a per-dwelling threshold
(mean 60 W/m2). richardsonpy ships German test-reference-year weather (Essen, 51 N), whose winter
days are far shorter than Shanghai's, so we compute the sun for the district instead: solar
position (Spencer's declination and equation of time), the Haurwitz clear-sky model
(1098 cos z exp(-0.057 / cos z) W/m2), and a clearness factor for clear, broken or overcast
days (assumed shares) with a slow hourly wander on broken days.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from evaluation.crest.params import Params

MIN_PER_DAY = 1440


def irradiance(rng: np.random.Generator, first_day: dt.date, days: int, params: Params) -> np.ndarray:
    """Global horizontal irradiance (W/m2) for every local minute of the run, shape (days * 1440,)."""
    lat = np.radians(params.latitude)
    out = np.zeros(days * MIN_PER_DAY)
    minutes = np.arange(MIN_PER_DAY) + 0.5
    kinds = rng.choice(3, size=days, p=np.array(params.sky_kinds))
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        doy = day.timetuple().tm_yday
        g = 2.0 * np.pi * (doy - 1) / 365.0
        decl = (
            0.006918
            - 0.399912 * np.cos(g)
            + 0.070257 * np.sin(g)
            - 0.006758 * np.cos(2 * g)
            + 0.000907 * np.sin(2 * g)
            - 0.002697 * np.cos(3 * g)
            + 0.00148 * np.sin(3 * g)
        )
        eot = 229.18 * (
            0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g)
        )
        solar_min = minutes + 4.0 * (params.longitude - 120.0) + eot  # local clock is UTC+8 (120 E)
        hour_angle = np.radians((solar_min / 4.0) - 180.0)
        cos_z = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
        cos_z = np.clip(cos_z, 0.0, None)
        with np.errstate(divide="ignore"):
            clear = np.where(cos_z > 0.01, 1098.0 * cos_z * np.exp(-0.057 / np.maximum(cos_z, 0.01)), 0.0)
        lo, hi = params.sky_clearness[int(kinds[d])]
        hourly = rng.uniform(lo, hi, 26)
        factor = np.interp(minutes / 60.0, np.arange(26) - 0.5, hourly)
        out[d * MIN_PER_DAY : (d + 1) * MIN_PER_DAY] = clear * factor
    return out
