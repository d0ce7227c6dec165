"""Decode and validate device messages (CONTRACT.md §1) into readings or dead-letter reasons.

Pure functions: bytes in, values out, no I/O. Nothing raises out of `decode_message`; every
bad input becomes a `Rejected` with a stable reason code (see `Reason`) and a human detail.
Inside a batch, each bad object is rejected on its own so one broken reading does not cost
the other 999.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from whistle.domain import Channel, DeviceType
from whistle.protocol import DEVICE_ID, EBIKE_EVENTS, ELEVATOR_EVENTS, SMOKE_EVENTS, TOPIC_PREFIX
from whistle.timeutil import parse_rfc3339


class Reason(StrEnum):
    """Stable dead-letter reason codes (API, metrics and docs use these strings)."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_CHANNEL = "unknown_channel"
    BAD_DEVICE_ID = "bad_device_id"
    UNREGISTERED_DEVICE = "unregistered_device"
    NOT_AUTHORIZED = "not_authorized"  # the sender's account may not publish on that topic
    TYPE_MISMATCH = "type_mismatch"
    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    BAD_BATCH = "bad_batch"
    BATCH_TOO_LARGE = "batch_too_large"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    NOT_FINITE = "not_finite"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a collector accepts; defaults from CONTRACT.md §1."""

    max_object_bytes: int = 16 * 1024
    max_batch_items: int = 1000
    max_message_bytes: int = 1024 * 1024
    horizon_ms: int = 45 * 86_400_000
    future_ms: int = 600_000


@dataclass(frozen=True, slots=True)
class Decoded:
    """One valid object of a message, not yet bound to the registry."""

    device_id: str
    device_type: DeviceType
    channel: Channel
    ts: int
    seq: int | None
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """One message (or one object of a batch) refused, and why."""

    reason: Reason
    detail: str
    payload: bytes


@dataclass(slots=True)
class Result:
    """What one MQTT message decoded into."""

    device_id: str | None = None
    device_type: DeviceType | None = None
    accepted: list[Decoded] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    batched: bool = False  # a `{"batch": [...]}` message: its device uploads buffered readings


# Field specifications --------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _number(lo: float | None = None, hi: float | None = None) -> Check:
    def check(name: str, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _Invalid(Reason.WRONG_TYPE, f"{name} must be a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise _Invalid(Reason.NOT_FINITE, f"{name} is not finite")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _Invalid(Reason.OUT_OF_RANGE, f"{name}={v} outside [{lo}, {hi}]")
        return v

    return check


def _integer(lo: int | None = None, hi: int | None = None) -> Check:
    def check(name: str, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Invalid(Reason.WRONG_TYPE, f"{name} must be an integer")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _Invalid(Reason.OUT_OF_RANGE, f"{name}={v} outside [{lo}, {hi}]")
        return v

    return check


def _boolean(name: str, v: Any) -> Any:
    if not isinstance(v, bool):
        raise _Invalid(Reason.WRONG_TYPE, f"{name} must be true or false")
    return v


def _one_of(*choices: str) -> Check:
    allowed = frozenset(choices)

    def check(name: str, v: Any) -> Any:
        if not isinstance(v, str):
            raise _Invalid(Reason.WRONG_TYPE, f"{name} must be a string")
        if v not in allowed:
            raise _Invalid(Reason.OUT_OF_RANGE, f"{name}={v[:40]!r} is not one of {sorted(allowed)}")
        return v

    return check


@dataclass(frozen=True, slots=True)
class Spec:
    required: Mapping[str, Check] = field(default_factory=dict)
    optional: Mapping[str, Check] = field(default_factory=dict)


_BATTERY = _number(0, 100)
_RSSI = _number(-150, 0)
_METER_STATUS = Spec(optional={"battery_pct": _BATTERY, "rssi_dbm": _RSSI, "online": _boolean})

SPECS: Mapping[tuple[DeviceType, Channel], Spec] = {
    (DeviceType.SMOKE, Channel.EVENT): Spec(
        required={"event": _one_of(*SMOKE_EVENTS)}, optional={"obscuration_db_m": _number(0, 100)}
    ),
    (DeviceType.SMOKE, Channel.STATUS): Spec(
        required={"battery_pct": _BATTERY}, optional={"rssi_dbm": _RSSI, "online": _boolean}
    ),
    (DeviceType.ELEVATOR, Channel.EVENT): Spec(
        required={"event": _one_of(*ELEVATOR_EVENTS)},
        optional={"code": _integer(0, 65535), "floor": _integer(-20, 300)},
    ),
    (DeviceType.ELEVATOR, Channel.DATA): Spec(
        required={"floor": _integer(-20, 300), "moving": _boolean, "door": _one_of("open", "closed")},
        optional={"load_pct": _number(0, 250), "speed_mps": _number(0, 25)},
    ),
    (DeviceType.ELEVATOR, Channel.STATUS): Spec(optional={"online": _boolean}),
    (DeviceType.EBIKE, Channel.DATA): Spec(required={"power_w": _number(0, 50_000)}),
    (DeviceType.EBIKE, Channel.EVENT): Spec(required={"event": _one_of(*EBIKE_EVENTS)}),
    (DeviceType.EBIKE, Channel.STATUS): _METER_STATUS,
    (DeviceType.WATER, Channel.DATA): Spec(
        required={"total_m3": _number(0, 1e9)}, optional={"flow_lph": _number(0, 1e6)}
    ),
    (DeviceType.WATER, Channel.STATUS): _METER_STATUS,
    (DeviceType.POWER, Channel.DATA): Spec(
        required={"total_kwh": _number(0, 1e10)}, optional={"power_w": _number(0, 1e6)}
    ),
    (DeviceType.POWER, Channel.STATUS): _METER_STATUS,
}

_TYPES = {t.value: t for t in DeviceType}
_CHANNELS = {c.value: c for c in Channel}


# Topics already parsed (a device publishes on the same few again and again): a tenth of the collector's time
# went into splitting and matching them. Bounded: emptied when full.
_TOPICS: dict[str, tuple[DeviceType, str, Channel]] = {}
_TOPICS_MAX = 100_000


def parse_topic(topic: str) -> tuple[DeviceType, str, Channel]:
    """Split `whistle/v1/{type}/{device_id}/{channel}`, or raise _Invalid."""
    got = _TOPICS.get(topic)
    if got is not None:
        return got
    got = _parse_topic(topic)
    if len(_TOPICS) >= _TOPICS_MAX:
        _TOPICS.clear()
    _TOPICS[topic] = got
    return got


def _parse_topic(topic: str) -> tuple[DeviceType, str, Channel]:
    if not topic.startswith(TOPIC_PREFIX):
        raise _Invalid(Reason.BAD_TOPIC, f"topic must start with {TOPIC_PREFIX}")
    parts = topic[len(TOPIC_PREFIX) :].split("/")
    if len(parts) != 3:
        raise _Invalid(Reason.BAD_TOPIC, "topic must be whistle/v1/{type}/{device_id}/{channel}")
    type_s, device_id, channel_s = parts
    device_type = _TYPES.get(type_s)
    if device_type is None:
        raise _Invalid(Reason.UNKNOWN_TYPE, f"unknown device type {type_s[:32]!r}")
    if not DEVICE_ID.match(device_id):
        raise _Invalid(Reason.BAD_DEVICE_ID, "device id must be 1-64 of A-Z a-z 0-9 _ -")
    channel = _CHANNELS.get(channel_s)
    if channel is None or (device_type, channel) not in SPECS:
        raise _Invalid(Reason.UNKNOWN_CHANNEL, f"no channel {channel_s[:32]!r} for {device_type}")
    return device_type, device_id, channel


def _timestamp(v: Any, received_at: int, limits: Limits) -> int:
    if isinstance(v, float) and not math.isfinite(v):
        raise _Invalid(Reason.NOT_FINITE, "ts is not finite")
    if isinstance(v, bool):
        raise _Invalid(Reason.BAD_TIMESTAMP, "ts must be integer milliseconds or an RFC 3339 string")
    if isinstance(v, int):
        ts = v
    elif isinstance(v, float) and v.is_integer():
        ts = int(v)
    elif isinstance(v, str):
        try:
            ts = parse_rfc3339(v)
        except (ValueError, OverflowError) as exc:
            raise _Invalid(Reason.BAD_TIMESTAMP, f"ts {v[:40]!r} is not RFC 3339 with an offset") from exc
    else:
        raise _Invalid(Reason.BAD_TIMESTAMP, "ts must be integer milliseconds or an RFC 3339 string")
    if ts > received_at + limits.future_ms:
        raise _Invalid(Reason.TS_IN_FUTURE, f"ts is {(ts - received_at) / 1000:.0f} s in the future")
    if ts < received_at - limits.horizon_ms:
        raise _Invalid(Reason.TS_TOO_OLD, f"ts is older than the {limits.horizon_ms / 86_400_000:g}-day horizon")
    return ts


def _decode_object(
    obj: Any, device_type: DeviceType, device_id: str, channel: Channel, received_at: int, limits: Limits
) -> Decoded:
    if not isinstance(obj, dict):
        raise _Invalid(Reason.NOT_OBJECT, "each message must be a JSON object")
    spec = SPECS[(device_type, channel)]
    if "ts" in obj:
        ts = _timestamp(obj["ts"], received_at, limits)
    elif channel is Channel.STATUS and obj.get("online") is False and len(obj) == 1:
        ts = received_at  # the MQTT will {"online": false} is set at connect time and has no ts
    else:
        raise _Invalid(Reason.MISSING_FIELD, "ts is required")
    seq = obj.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq >= 2**63):
        raise _Invalid(Reason.WRONG_TYPE, "seq must be a non-negative integer")
    values: dict[str, Any] = {}
    for name, check in spec.required.items():
        if name not in obj:
            raise _Invalid(Reason.MISSING_FIELD, f"{name} is required for {device_type}/{channel}")
        values[name] = check(name, obj[name])
    for name, check in spec.optional.items():
        v = obj.get(name)
        if v is not None:
            values[name] = check(name, v)
    return Decoded(device_id, device_type, channel, ts, seq, values)


def _item_bytes(obj: Any) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=True).encode()[:16384]
    except (TypeError, ValueError):
        return repr(obj).encode()[:16384]


def decode_message(topic: str, payload: bytes, *, received_at: int, limits: Limits | None = None) -> Result:
    """Decode one MQTT message. Never raises: bad input comes back in `Result.rejected`."""
    lim = limits or Limits()
    result = Result()
    try:
        device_type, device_id, channel = parse_topic(topic)
        result.device_id, result.device_type = device_id, device_type
        if len(payload) > lim.max_message_bytes:
            raise _Invalid(Reason.OVERSIZED, f"{len(payload)} bytes > {lim.max_message_bytes}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Invalid(Reason.NOT_UTF8, f"payload is not UTF-8 at byte {exc.start}") from exc
        try:
            # NaN and Infinity parse as floats and are refused field by field, so one bad object
            # in a batch costs only itself.
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _Invalid(Reason.NOT_JSON, f"payload is not JSON: {str(exc)[:120]}") from exc
        if not isinstance(doc, dict):
            raise _Invalid(Reason.NOT_OBJECT, "payload must be a JSON object")
        if "batch" in doc:
            batch = doc["batch"]
            if not isinstance(batch, list) or len(doc) != 1:
                raise _Invalid(Reason.BAD_BATCH, 'a batch is {"batch": [object, ...]} and nothing else')
            if len(batch) > lim.max_batch_items:
                raise _Invalid(Reason.BATCH_TOO_LARGE, f"{len(batch)} objects > {lim.max_batch_items}")
            result.batched = True
            for i, obj in enumerate(batch):
                try:
                    result.accepted.append(_decode_object(obj, device_type, device_id, channel, received_at, lim))
                except _Invalid as exc:
                    result.rejected.append(Rejected(exc.reason, f"batch[{i}]: {exc.detail}", _item_bytes(obj)))
            return result
        if len(payload) > lim.max_object_bytes:
            raise _Invalid(Reason.OVERSIZED, f"{len(payload)} bytes > {lim.max_object_bytes}")
        result.accepted.append(_decode_object(doc, device_type, device_id, channel, received_at, lim))
    except _Invalid as exc:
        result.accepted.clear()
        result.rejected.append(Rejected(exc.reason, exc.detail, payload[: lim.max_object_bytes]))
    return result
