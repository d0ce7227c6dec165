"""docs/EVALUATION.md is written by the front-door evaluation; what follows its marker is kept on a rewrite.

The internal tuning harness (scripts/tune_harness.py) writes docs/tuning/HARNESS.md the same way.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType

from evaluation.frontdoor.report import DOC_MARKER, write_doc

ROOT = Path(__file__).resolve().parents[1]


def test_a_rewrite_replaces_the_report_and_keeps_the_notes_after_the_marker(tmp_path: Path) -> None:
    report = json.loads((ROOT / "docs" / "evaluation.json").read_text(encoding="utf-8"))
    assert report["generated_by"] == "python -m evaluation.frontdoor suite"
    doc = tmp_path / "EVALUATION.md"
    write_doc({**report, "command": "make eval"}, doc)
    first = doc.read_text(encoding="utf-8")
    assert first.count(DOC_MARKER) == 1 and "```sh\nmake eval\n```" in first
    for name in report["sources"]:
        assert f"{name} tuning (" in first and f"{name} held-out (" in first
    doc.write_text(first + "\n## Another season\n\nnotes by hand\n", encoding="utf-8")
    again = copy.deepcopy(report)
    again["command"] = "make eval again"
    again["started"] = "2027-01-01T00:00:00+00:00"
    write_doc(again, doc)
    second = doc.read_text(encoding="utf-8")
    assert second.count(DOC_MARKER) == 1
    assert "Started 2027-01-01T00:00:00+00:00" in second and "make eval again" in second
    assert "```sh\nmake eval\n```" not in second
    assert second.endswith("## Another season\n\nnotes by hand\n")


def test_the_committed_report_is_the_one_its_json_writes(tmp_path: Path) -> None:
    """docs/EVALUATION.md was generated from docs/evaluation.json (only the notes after the marker are by hand)."""
    report = json.loads((ROOT / "docs" / "evaluation.json").read_text(encoding="utf-8"))
    committed = (ROOT / "docs" / "EVALUATION.md").read_text(encoding="utf-8")
    fresh = tmp_path / "EVALUATION.md"
    write_doc(report, fresh)
    assert fresh.read_text(encoding="utf-8") == committed[: committed.index(DOC_MARKER)] + DOC_MARKER + "\n"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tune_harness", ROOT / "scripts" / "tune_harness.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_tuning_harness_report_says_it_is_not_of_record_and_keeps_its_notes(tmp_path: Path) -> None:
    harness = _harness()
    report = json.loads((ROOT / "docs" / "tuning" / "harness_seed7.json").read_text(encoding="utf-8"))
    doc = tmp_path / "HARNESS.md"
    doc.write_text("old\n" + harness.DOC_MARKER + "\nnotes by hand\n", encoding="utf-8")
    harness.write_doc(report, doc, "make tune")
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Internal tuning harness: figures NOT of record")
    assert text.count(harness.DOC_MARKER) == 1 and text.endswith("notes by hand\n") and "make tune" in text
