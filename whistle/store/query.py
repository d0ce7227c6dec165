"""A WHERE clause built from optional filters, with its parameters kept beside it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Where:
    """Collects `AND`-ed conditions; `eq` skips filters that were not given."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def eq(self, filters: Mapping[str, Any], *, prefix: str = "") -> Where:
        for col, value in filters.items():
            if value is not None:
                self.add(f"{prefix}{col} = %s", value)
        return self

    def add(self, clause: str, *args: Any) -> Where:
        self.clauses.append(clause)
        self.args.extend(args)
        return self

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""
