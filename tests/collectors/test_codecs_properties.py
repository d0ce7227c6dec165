"""Property-based tests: no input can raise out of the decoder, and what it accepts obeys the contract."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.codecs import SPECS, Limits, Reason, decode_message
from whistle.domain import Channel, DeviceType

NOW = 1_795_000_000_000
LIMITS = Limits(max_object_bytes=2048, max_batch_items=20, max_message_bytes=64 * 1024)
TOPICS = [f"whistle/v1/{t.value}/DEV-1/{c.value}" for (t, c) in SPECS]
FIELDS = sorted({name for spec in SPECS.values() for name in (*spec.required, *spec.optional)} | {"ts", "seq"})

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
field_values = (
    st.sampled_from(
        [
            NOW,
            NOW - 3_600_000,
            NOW + 3_600_000,
            "2026-11-18T08:00:00+08:00",
            "alarm",
            "trapped",
            "open",
            "closed",
            True,
            False,
            0,
            50,
            101,
            -1,
            1e308,
            math.nan,
        ]
    )
    | json_scalars
)
objects = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=8)


def check(res: Any, payload_len: int) -> None:
    for rej in res.rejected:
        assert isinstance(rej.reason, Reason)
        assert len(rej.payload) <= max(LIMITS.max_object_bytes, 16384)
        assert rej.detail
    for item in res.accepted:
        spec = SPECS[(item.device_type, item.channel)]
        assert set(item.values) <= set(spec.required) | set(spec.optional)
        assert set(spec.required) <= set(item.values)
        assert NOW - LIMITS.horizon_ms <= item.ts <= NOW + LIMITS.future_ms
        for v in item.values.values():
            assert not (isinstance(v, float) and not math.isfinite(v))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.text(max_size=80) | st.sampled_from(TOPICS), payload=st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    res = decode_message(topic, payload, received_at=NOW, limits=LIMITS)
    assert res.accepted == [] or res.rejected == [] or res.device_id is not None
    check(res, len(payload))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), doc=json_values)
def test_arbitrary_json_never_raises(topic: str, doc: Any) -> None:
    payload = json.dumps(doc).encode()
    res = decode_message(topic, payload, received_at=NOW, limits=LIMITS)
    check(res, len(payload))
    assert res.accepted or res.rejected  # every message is answered one way or the other


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), obj=objects)
def test_contract_shaped_objects_are_accepted_or_answered(topic: str, obj: dict[str, Any]) -> None:
    res = decode_message(topic, json.dumps(obj).encode(), received_at=NOW, limits=LIMITS)
    check(res, 0)
    assert len(res.accepted) + len(res.rejected) == 1


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), batch=st.lists(objects, max_size=LIMITS.max_batch_items))
def test_every_object_of_a_batch_is_accounted_for(topic: str, batch: list[dict[str, Any]]) -> None:
    res = decode_message(topic, json.dumps({"batch": batch}).encode(), received_at=NOW, limits=LIMITS)
    check(res, 0)
    assert len(res.accepted) + len(res.rejected) == len(batch)


@given(
    seq=st.integers(0, 2**63 - 1),
    ts=st.integers(NOW - LIMITS.horizon_ms, NOW + LIMITS.future_ms),
    total=st.floats(0, 1e9, allow_nan=False),
)
def test_valid_water_readings_round_trip(seq: int, ts: int, total: float) -> None:
    res = decode_message(
        "whistle/v1/water/WM-1/data", json.dumps({"ts": ts, "seq": seq, "total_m3": total}).encode(), received_at=NOW
    )
    (item,) = res.accepted
    assert (item.device_type, item.channel, item.ts, item.seq, item.values["total_m3"]) == (
        DeviceType.WATER,
        Channel.DATA,
        ts,
        seq,
        total,
    )
