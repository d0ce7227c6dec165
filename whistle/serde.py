"""Bus serialisation of readings and detections: compact JSON, the same on every backend.

Readings, the hot path (every message, on both sides of the bus), go through `orjson` (a compiled codec: the
standard library's encoder was 8 % of the collector's time at 16,000 msg/s, docs/BENCHMARKS.md); its output is
the same compact UTF-8 JSON. Detections, a few per second, keep the standard library, which also takes the
float subclasses a rule's evidence may hold.

Besides readings, the readings topics carry control records, told apart by their first byte (a reading
is a JSON object, `{`): `R` a registry change (`RegistryChange`: every role reloads the registry before
it judges the records after it), `S` a collector's source mark (`SourceMark`: it is there, how far it has
come, whether it holds anything it has not published; `rules.processor`, sources).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from whistle.domain import (
    AlarmKind,
    Channel,
    Detection,
    DetectionAction,
    DeviceType,
    Reading,
    Severity,
    SubjectType,
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_reading(r: Reading, source: str | None = None) -> bytes:
    """A reading's bus record; `source` names the collector publishing it (kept as `Reading.source`)."""
    o = {
        "d": r.device_id,
        "t": r.device_type.value,
        "c": r.channel.value,
        "ts": r.ts,
        "rx": r.received_at,
        "v": r.values,
        "q": r.seq,
        "h": r.household_id,
        "b": r.building_id,
        "g": r.grid_id,
    }
    if source is not None:
        o["s"] = source
    if r.batched:
        o["B"] = 1
    return orjson.dumps(o)


def decode_reading(raw: bytes) -> Reading:
    o: dict[str, Any] = orjson.loads(raw)
    return Reading(
        device_id=o["d"],
        device_type=DeviceType(o["t"]),
        channel=Channel(o["c"]),
        ts=o["ts"],
        received_at=o["rx"],
        values=o["v"],
        seq=o["q"],
        household_id=o["h"],
        building_id=o["b"],
        grid_id=o["g"],
        source=o.get("s"),
        batched=bool(o.get("B")),
    )


def encode_detection(d: Detection) -> bytes:
    return _dumps(
        {
            "kind": d.kind.value,
            "severity": d.severity.value,
            "subject_type": d.subject_type.value,
            "subject_id": d.subject_id,
            "ts": d.ts,
            "action": d.action.value,
            "evidence": d.evidence,
            "household_id": d.household_id,
            "building_id": d.building_id,
            "grid_id": d.grid_id,
            "source_id": d.source_id,
        }
    ).encode()


def decode_detection(raw: bytes) -> Detection:
    o: dict[str, Any] = json.loads(raw)
    return Detection(
        kind=AlarmKind(o["kind"]),
        severity=Severity(o["severity"]),
        subject_type=SubjectType(o["subject_type"]),
        subject_id=o["subject_id"],
        ts=o["ts"],
        action=DetectionAction(o["action"]),
        evidence=o["evidence"],
        household_id=o["household_id"],
        building_id=o["building_id"],
        grid_id=o["grid_id"],
        source_id=o["source_id"],
    )


REGISTRY_CHANGE = b"R"


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """The registry changed (an import, an absence, a tag): reload it before judging what follows."""

    version: int
    what: str
    at: int


def encode_registry_change(c: RegistryChange) -> bytes:
    return REGISTRY_CHANGE + _dumps({"v": c.version, "what": c.what, "at": c.at}).encode()


SOURCE_MARK = b"S"


@dataclass(frozen=True, slots=True)
class SourceMark:
    """A collector on every partition: `source` is running, has published readings up to event time `clock`
    (0: none yet), at `at` (its wall clock); `idle`: it has stopped, and holds nothing."""

    source: str
    clock: int
    at: int
    idle: bool


def encode_source_mark(m: SourceMark) -> bytes:
    return SOURCE_MARK + orjson.dumps({"s": m.source, "c": m.clock, "at": m.at, "i": m.idle})


def decode_control(raw: bytes) -> RegistryChange | SourceMark | None:
    """The control record `raw` holds, or None when it is a reading (or anything else not a control record)."""
    first = raw[:1]
    if first == REGISTRY_CHANGE:
        o: dict[str, Any] = json.loads(raw[1:])
        return RegistryChange(int(o["v"]), str(o.get("what", "")), int(o.get("at", 0)))
    if first == SOURCE_MARK:
        o = orjson.loads(raw[1:])
        return SourceMark(str(o["s"]), int(o["c"]), int(o["at"]), bool(o["i"]))
    return None
