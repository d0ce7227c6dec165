"""Read a generated CREST dataset back from its files, the way a scorer would."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FILES = ("registry.json", "messages.jsonl", "truth.jsonl", "absences.json", "summary.json")
QUARTER_MS = 15 * 60_000
MINUTE_MS = 60_000


@dataclass
class Series:
    """One device's readings in event-time order."""

    type: str
    ts: np.ndarray
    seq: np.ndarray
    value: np.ndarray
    send_at: list[int] = field(default_factory=list)


@dataclass
class Dataset:
    """A generated run's files, parsed."""

    path: Path
    registry: dict[str, Any]
    lines: list[dict[str, Any]]
    truth: list[dict[str, Any]]
    absences: list[dict[str, Any]]
    summary: dict[str, Any]
    series: dict[str, Series]

    @classmethod
    def load(cls, path: Path) -> Dataset:
        registry = json.loads((path / "registry.json").read_text(encoding="utf-8"))
        with (path / "messages.jsonl").open(encoding="utf-8") as fh:
            lines = [json.loads(line) for line in fh]
        with (path / "truth.jsonl").open(encoding="utf-8") as fh:
            truth = [json.loads(line) for line in fh]
        absences = json.loads((path / "absences.json").read_text(encoding="utf-8"))
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        field_of = {"water": "total_m3", "power": "total_kwh", "ebike": "power_w"}
        raw: dict[str, dict[str, list[Any]]] = {}
        for msg in lines:
            _, _, dtype, device, _ = msg["topic"].split("/")
            r = raw.setdefault(device, {"type": [dtype], "ts": [], "seq": [], "value": [], "send_at": []})
            for item in msg["payload"]["batch"]:
                r["ts"].append(item["ts"])
                r["seq"].append(item["seq"])
                r["value"].append(item[field_of[dtype]])
            r["send_at"].append(msg["send_at"])
        series: dict[str, Series] = {}
        for device, r in raw.items():
            ts = np.array(r["ts"], dtype=np.int64)
            order = np.argsort(ts, kind="stable")
            series[device] = Series(
                r["type"][0],
                ts[order],
                np.array(r["seq"], dtype=np.int64)[order],
                np.array(r["value"], dtype=float)[order],
                r["send_at"],
            )
        return cls(path, registry, lines, truth, absences, summary, series)

    @property
    def t0(self) -> int:
        return int(self.summary["first_ms"])

    @property
    def t_end(self) -> int:
        return int(self.summary["end_ms"])

    def households(self) -> dict[str, dict[str, Any]]:
        return {h["id"]: h for h in self.registry["households"]}

    def devices_of(self, household_id: str) -> dict[str, str]:
        return {d["type"]: d["id"] for d in self.registry["devices"] if d.get("household_id") == household_id}

    def register_at(self, device: str, ms: int) -> float:
        """The register reading at a quarter-hour instant (exact match required)."""
        s = self.series[device]
        i = int(np.searchsorted(s.ts, ms))
        assert i < len(s.ts) and s.ts[i] == ms, f"no reading of {device} at {ms}"
        return float(s.value[i])

    def use(self, device: str, start_ms: int, end_ms: int) -> float:
        """Register difference between the readings at the quarter hours at or after start and at or before end."""
        a = -(-(start_ms - self.t0) // QUARTER_MS) * QUARTER_MS + self.t0
        b = (end_ms - self.t0) // QUARTER_MS * QUARTER_MS + self.t0
        last = int(self.series[device].ts[-1])
        b = min(b, last)
        return self.register_at(device, b) - self.register_at(device, a) if b > a else 0.0

    def daily_use(self, device: str) -> float:
        """Mean use per day over the whole run (first to last reading)."""
        s = self.series[device]
        return float((s.value[-1] - s.value[0]) / ((s.ts[-1] - s.ts[0]) / 86_400_000))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [t for t in self.truth if t["kind"] == kind]
