"""Prometheus text exposition (format 0.0.4) of a process's counters and gauges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    help: str
    type: str  # "counter" or "gauge"
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def to_document(samples: Iterable[Sample]) -> list[list[Any]]:
    """Samples as JSON (a heartbeat carries its process's, whistle.heartbeat)."""
    return [[s.name, s.help, s.type, s.value, dict(s.labels)] for s in samples]


def from_document(doc: Any, **labels: str) -> list[Sample]:
    """`to_document`'s samples back, with `labels` added; anything malformed is skipped."""
    out: list[Sample] = []
    for row in doc if isinstance(doc, list) else ():
        try:
            name, help_, kind, value, own = row
            out.append(Sample(str(name), str(help_), str(kind), float(value), {**dict(own), **labels}))
        except (TypeError, ValueError):
            continue
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def render(samples: Iterable[Sample]) -> str:
    """Samples grouped by metric name, each name with its HELP and TYPE lines once."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.name, []).append(s)
    lines: list[str] = []
    for name, group in groups.items():
        lines.append(f"# HELP {name} {group[0].help}")
        lines.append(f"# TYPE {name} {group[0].type}")
        for s in group:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            lines.append(f"{name}{{{labels}}} {_number(s.value)}" if labels else f"{name} {_number(s.value)}")
    return "\n".join(lines) + "\n"
