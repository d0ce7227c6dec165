"""Simulator fixtures: districts and runs built once per session (everything is deterministic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from simulators.behaviour import DaySignals, simulate_day
from simulators.district import District, build_district
from simulators.scenario import Incident, Scenario
from simulators.stream import SimMessage, Simulation, TrafficOptions
from simulators.timebase import day_start, parse_start
from whistle.timeutil import DAY_MS, local_day


@dataclass(frozen=True)
class Week:
    """A week of signals for a district, with the incidents behind them."""

    district: District
    scenario: Scenario
    days: list[DaySignals]
    incidents: list[Incident]

    def special(self) -> set[int]:
        """Households with any household-level incident or confounder (the rest are 'normal')."""
        return {i.index for i in self.incidents if i.subject_type == "household"}

    def normal(self) -> np.ndarray:
        hp = self.district.households
        sp = self.special()
        return np.array([h for h in range(self.district.n_households) if hp.actual[h] > 0 and h not in sp])

    def water(self) -> np.ndarray:
        """(days, households, 96) litres."""
        return np.stack([d.water_l for d in self.days])

    def power(self) -> np.ndarray:
        """(days, households, 96) Wh."""
        return np.stack([d.power_wh for d in self.days])


def run_week(households: int, seed: int, start: str, days: int = 7) -> Week:
    d = build_district(households, seed=seed)
    t0 = parse_start(start)
    sc = Scenario(d, start_ms=t0, end_ms=t0 + days * DAY_MS, seed=seed)
    out = []
    d0 = local_day(t0)
    for day in range(d0, d0 + days):
        out.append(simulate_day(d, sc.active(day_start(day), day_start(day + 1)), day, seed))
    return Week(d, sc, out, list(sc.incidents))


SEASONS = {"winter": "2026-01-12", "spring": "2026-04-06", "summer": "2026-07-13", "autumn": "2026-10-12"}


@pytest.fixture(scope="session")
def weeks() -> dict[str, Week]:
    """A week of each season for 800 households (Monday to Sunday)."""
    return {name: run_week(800, 21, start) for name, start in SEASONS.items()}


@pytest.fixture(scope="session")
def full_district() -> District:
    """The street at the seed case's size."""
    return build_district(25_000, seed=11)


@dataclass(frozen=True)
class Run:
    sim: Simulation
    messages: list[SimMessage]
    truth: list[str]


@pytest.fixture(scope="session")
def run2d() -> Run:
    """Two days of traffic for 160 households with every delivery option on, and raised incident rates."""
    from simulators.params import IncidentParams, Params

    params = Params(
        incidents=IncidentParams(
            fire_per_building_day=0.15,
            trapped_per_elevator_day=0.3,
            fault_per_elevator_day=0.3,
            offline_per_device_day=0.01,
            meter_reset_per_meter_day=0.01,
            lone_elder_inactive_per_elder_day=0.05,
            elder_trip_per_elder_day=0.05,
            tap_running_per_household_day=0.02,
        )
    )
    d = build_district(160, seed=8, params=params)
    t0 = parse_start("2026-03-02T00:00:00+08:00")
    sim = Simulation(
        d,
        start_ms=t0,
        end_ms=t0 + 2 * DAY_MS,
        seed=8,
        options=TrafficOptions(nbiot_share=0.3, power_batch_share=0.2, late_share=0.02, malformed_share=0.002),
    )
    truth = list(sim.truth_lines())
    return Run(sim, list(sim.messages()), truth)
