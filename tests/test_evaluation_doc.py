"""docs/EVALUATION.md is written by scripts/evaluate.py; what follows its marker is kept on a rewrite."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _evaluate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_rewrite_replaces_the_report_and_keeps_the_notes_after_the_marker(tmp_path: Path) -> None:
    ev = _evaluate()
    report = json.loads((ROOT / "docs" / "evaluation.json").read_text(encoding="utf-8"))
    doc = tmp_path / "EVALUATION.md"
    ev.write_doc(report, doc, "make eval")
    first = doc.read_text(encoding="utf-8")
    assert first.count(ev.DOC_MARKER) == 1 and "make eval" in first
    doc.write_text(first + "\n## Another seed\n\nnotes by hand\n", encoding="utf-8")
    report["run"]["seed"] = 99
    ev.write_doc(report, doc, "make eval again")
    second = doc.read_text(encoding="utf-8")
    assert second.count(ev.DOC_MARKER) == 1
    assert "seed 99" in second and "make eval again" in second and "make eval\n" not in second
    assert second.endswith("## Another seed\n\nnotes by hand\n")
