"""Same arguments give the same bytes; another seed gives other data; Python's global `random` is never used."""

from __future__ import annotations

import random
from pathlib import Path

from tests.evaluation.conftest import generate
from tests.evaluation.dataset import FILES

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
