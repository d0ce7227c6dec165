"""richardsonpy is GPL-3.0: only the evaluation tooling may import it, never the product's packages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("whistle", "collectors", "rules", "alerts", "api", "simulators")

PROBE = """
import importlib, json, pkgutil, sys
failed = []
for name in %r:
    pkg = importlib.import_module(name)
    for info in pkgutil.walk_packages(pkg.__path__, name + "."):
        try:
            importlib.import_module(info.name)
        except Exception:  # a module that cannot import here is reported, not our concern
            failed.append(info.name)
print(json.dumps({
    "richardsonpy": sorted(m for m in sys.modules if m.split(".")[0] == "richardsonpy"),
    "evaluation": sorted(m for m in sys.modules if m.split(".")[0] == "evaluation"),
    "imported": len(sys.modules),
    "failed": failed,
}))
"""


def test_no_product_module_imports_richardsonpy_or_the_evaluation_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (PRODUCT,)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["richardsonpy"] == [] and seen["evaluation"] == [], seen
    assert seen["imported"] > 100
