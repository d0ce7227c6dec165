"""Same arguments give the same bytes; another seed gives other data; Python's global `random` is never used."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from tests.evaluation.conftest import generate
from tests.evaluation.dataset import FILES, Dataset

SMALL = ["--households", "30", "--days", "3", "--first-day", "2026-11-03", "--incident-scale", "30"]


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", [*SMALL, "--seed", "5"])
    b = generate(tmp_path / "b", [*SMALL, "--seed", "5"])
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_gives_different_data(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", [*SMALL, "--seed", "5"])
    b = generate(tmp_path / "b", [*SMALL, "--seed", "6"])
    for name in ("registry.json", "messages.jsonl", "truth.jsonl"):
        assert (a / name).read_bytes() != (b / name).read_bytes(), name


def test_the_global_random_state_is_left_alone(tmp_path: Path) -> None:
    """richardsonpy's own loops draw from `random`; the generator must neither use nor disturb it."""
    random.seed(1234)
    before = random.getstate()
    generate(tmp_path / "a", [*SMALL, "--seed", "5"])
    assert random.getstate() == before


def test_more_incidents_leave_every_other_household_alone(tmp_path: Path) -> None:
    """Each stage draws per unit, lamp, flat or circuit: incidents change only the flats they happen in."""
    args = ["--households", "60", "--days", "10", "--seed", "8"]
    quiet = Dataset.load(generate(tmp_path / "quiet", [*args, "--incident-scale", "0"]))
    busy = Dataset.load(generate(tmp_path / "busy", [*args, "--incident-scale", "30"]))
    assert quiet.registry == busy.registry
    assert not quiet.of_kind("household.lone_elder_inactive") and busy.of_kind("household.lone_elder_inactive")
    owner = {d["id"]: d["household_id"] for d in busy.registry["devices"]}
    touched = {
        owner.get(s, s)
        for t in busy.truth
        if not t["confounder"]
        and t["kind"] != "household.group_rental_suspected"
        and t["kind"] != "ebike.indoor_charging"
        for s in t["subject_ids"]
    }
    kept = 0
    for device, s in quiet.series.items():
        if owner[device] in touched:
            continue
        other = busy.series[device]
        assert np.array_equal(s.value, other.value) and np.array_equal(s.ts, other.ts), device
        kept += 1
    assert kept >= 80
