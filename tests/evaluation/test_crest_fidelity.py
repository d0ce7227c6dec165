"""Our vectorised CREST loops against richardsonpy's own pure-Python ones, on the same inputs.

richardsonpy draws from Python's global `random`, so its side is seeded here (and the state put
back); ours from a numpy Generator. The two are compared in distribution, on what the known
richardsonpy deviations from CREST (see evaluation/crest/crest.py) do not touch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from richardsonpy.classes.appliance import run_application_simulation  # type: ignore[import-untyped]
from richardsonpy.classes.lighting import (  # type: ignore[import-untyped]
    LightingModelConfiguration,
    run_lighting_simulation,
)
from richardsonpy.classes.occupancy import Occupancy  # type: ignore[import-untyped]

from evaluation.crest import crest

DAYS = 40
INITIAL_DAY = 6  # richardsonpy: 1-5 Monday-Friday, 6-7 the weekend


@contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _day_types(days: int) -> np.ndarray:
    """richardsonpy's calendar, (i + initial_day) % 7 in (0, 6) is a weekend day, with a column for the day before."""
    out = [crest.WEEKEND if (i + INITIAL_DAY) % 7 in (0, 6) else crest.WEEKDAY for i in range(-1, days)]
    return np.array(out, dtype=np.int64)


def _richardsonpy_occupancy(size: int, n: int, seed: int) -> np.ndarray:
    with seeded_random(seed):
        return np.stack([Occupancy(size, initial_day=INITIAL_DAY, nb_days=DAYS).occupancy for _ in range(n)])


def test_occupancy_chain_matches_richardsonpy_by_hour() -> None:
    rng = np.random.default_rng(1)
    for size in (1, 3):
        theirs = _richardsonpy_occupancy(size, 12, seed=size)
        n = 200
        ours = crest.run_occupancy(
            rng, np.full(n, size), np.tile(_day_types(DAYS), (n, 1)), np.zeros(n, dtype=np.int64), DAYS * 144
        )
        t_hour = theirs.reshape(-1, DAYS, 24, 6).mean(axis=(0, 1, 3))
        o_hour = ours.reshape(-1, DAYS, 24, 6).mean(axis=(0, 1, 3))
        assert abs(t_hour.mean() - o_hour.mean()) < 0.05 * size, (size, t_hour.mean(), o_hour.mean())
        assert np.abs(t_hour - o_hour).max() < 0.15 * size, (size, np.round(t_hour - o_hour, 2))
        assert np.corrcoef(t_hour, o_hour)[0, 1] > 0.95


def test_fridge_and_kettle_energy_match_richardsonpy() -> None:
    data = crest.load()
    owned = np.zeros(crest.N_APPLIANCES, dtype=bool)
    owned[[crest.FRIDGE_FREEZER, crest.KETTLE]] = True
    scalar = crest.calibrate(owned, 2000.0)
    occ = _richardsonpy_occupancy(2, 1, seed=7)[0]
    app = crest._OwnedAppliances(data.appliances_csv, owned, 2000.0)
    app.calib_scalar = list(scalar)
    stats = np.loadtxt(f"{crest.inputs_dir()}/constants/ActiveAppliances_wd.csv", delimiter=";").tolist()
    with seeded_random(3):
        theirs = [
            np.sum(np.array(run_application_simulation(occ[144 * d : 144 * (d + 1)], app, stats, 11))[owned]) / 60_000
            for d in range(DAYS)
        ]
    n = 20
    run = crest.run_appliances(
        np.random.default_rng(2),
        np.tile(occ, (n, 1)).astype(np.int8),
        np.ones((n, len(occ)), dtype=bool),
        np.tile(_day_types(DAYS), (n, 1)),
        np.zeros(n, dtype=np.int64),
        np.tile(owned, (n, 1)),
        np.tile(scalar, (n, 1)),
        np.ones(n, dtype=bool),
        np.full(n, -1),
        np.full(n, -1),
        np.full(DAYS, 11),
        [],
        (),
    )
    ours = run.meter_wmin.sum() / 60_000 / n / DAYS
    assert abs(ours - np.mean(theirs)) / np.mean(theirs) < 0.12, (ours, np.mean(theirs))


def test_lighting_energy_matches_richardsonpy() -> None:
    data = crest.load()
    bulbs = np.array(data.bulb_sets[3][:10], dtype=float)
    occ = _richardsonpy_occupancy(2, 1, seed=9)[0]
    minute = np.arange(1440)
    day_irr = np.where((minute > 7 * 60) & (minute < 17 * 60), 300.0, 0.0)
    days = 30
    with seeded_random(4):
        theirs = [
            np.sum(
                [
                    sum(b)
                    for b in run_lighting_simulation(
                        occ[144 * d : 144 * (d + 1)], list(bulbs), day_irr, LightingModelConfiguration()
                    )
                ]
            )
            / 60_000
            for d in range(days)
        ]
    n = 12
    ours_wmin = crest.run_lighting(
        np.random.default_rng(5),
        np.tile(occ[: 144 * days], (n, 1)).astype(np.int8),
        np.ones((n, 144 * days), dtype=bool),
        np.full(n, -1),
        np.full(n, -1),
        [bulbs] * n,
        np.tile(day_irr, days),
        np.ones(n, dtype=bool),
    )
    ours = ours_wmin.sum() / 60_000 / n / days
    assert abs(ours - np.mean(theirs)) / np.mean(theirs) < 0.2, (ours, np.mean(theirs))


def test_the_homebound_elder_chain_is_crest_with_fewer_departures() -> None:
    cum = crest.homebound_tpm_cum(0.5, 2.0, 42, 126)
    p = np.diff(np.concatenate([np.zeros((*cum.shape[:3], 1)), cum], axis=-1), axis=-1)
    assert p.min() >= 0.0
    assert np.allclose(cum[..., -1], crest.load().tpm_cum[0][..., -1])  # rows still sum as CREST's do
    assert np.array_equal(cum[:, :42], crest.load().tpm_cum[0][:, :42])  # nights untouched
    n, days = 200, 20
    one = np.ones(n, dtype=np.int64)
    types = np.tile(_day_types(days), (n, 1))
    zero = np.zeros(n, dtype=np.int64)
    plain = crest.run_occupancy(np.random.default_rng(3), one, types, zero, days * 144)
    home = crest.run_occupancy(np.random.default_rng(3), one, types, zero, days * 144, np.ones(n, dtype=bool), cum)
    day = slice(42, 126)
    assert home.reshape(n, days, 144)[:, :, day].mean() > plain.reshape(n, days, 144)[:, :, day].mean() + 0.15
