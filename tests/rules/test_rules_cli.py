from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main


def test_rules_check_accepts_the_shipped_file_and_prints_effective_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(Path("rules/default.yaml"))]) == 0
    out = capsys.readouterr().out
    assert "valid; 0 override(s)" in out and "'min_span_s': 10800.0" in out


def test_rules_check_names_the_bad_path_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("overrides:\n  - grid: RJ-G1\n    rules:\n      elevator: {repeat_count: 1}\n")
    assert main(["rules", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "overrides[0].rules.elevator.repeat_count" in err and "greater than or equal to 2" in err
