"""The endpoint × role table of docs/PERMISSIONS.md, read as data (the tests walk it; the docs are the contract)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "PERMISSIONS.md"
CELLS = frozenset({"allow", "scope", "own", "deny", "401"})


@dataclass(frozen=True, slots=True)
class Row:
    method: str
    path: str  # as written, with a variant: `/api/v1/silences (life safety)`, `/api/v1/live?recipient_id=...`
    cells: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def route(self) -> tuple[str, str]:
        """The route this row is about (variants stripped)."""
        return self.method, re.split(r"[ ?]", self.path, maxsplit=1)[0]


def read_table(doc: Path = DOC) -> tuple[list[str], list[Row]]:
    """The roles (columns after `endpoint`) and the rows between the permissions markers."""
    text = doc.read_text(encoding="utf-8")
    body = text.split("<!-- permissions:begin -->", 1)[1].split("<!-- permissions:end -->", 1)[0]
    lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    roles = header[1:]
    rows = []
    for line in lines[2:]:
        cols = [c.strip() for c in line.strip("|").split("|")]
        endpoint = cols[0].strip("`")
        method, path = endpoint.split(" ", 1)
        cells = dict(zip(roles, cols[1:], strict=True))
        bad = {v for v in cells.values() if v not in CELLS}
        assert not bad, f"{endpoint}: unknown cells {bad}"
        rows.append(Row(method, path, cells))
    return roles, rows
