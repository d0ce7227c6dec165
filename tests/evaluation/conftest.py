"""Session fixtures: small CREST districts generated once through the command line's own entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.crest.__main__ import main
from tests.evaluation.dataset import Dataset

# A district big enough to hold every incident and confounder kind, small enough to run in seconds:
# 120 flats over 12 days, the inactivity and continuous-flow rates scaled up for the test.
DISTRICT_ARGS = [
    "--households",
    "120",
    "--days",
    "12",
    "--seed",
    "11",
    "--first-day",
    "2026-11-03",
    "--incident-scale",
    "15",
]


def generate(out: Path, args: list[str]) -> Path:
    """Run ``python -m evaluation.crest`` (in process) into `out`."""
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def district_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("crest-district"), DISTRICT_ARGS)


@pytest.fixture(scope="session")
def district(district_dir: Path) -> Dataset:
    return Dataset.load(district_dir)
