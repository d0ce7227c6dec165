from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from collectors.codecs import Limits, Reason, decode_message
from whistle.domain import Channel, DeviceType

NOW = 1_795_000_000_000  # 2026-11-18T11:06:40Z
SMOKE = "whistle/v1/smoke/SM-0001/event"


def dec(topic: str, payload: object, *, raw: bytes | None = None, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    data = raw if raw is not None else json.dumps(payload).encode()
    return decode_message(topic, data, received_at=NOW, limits=limits)


def reasons(res) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.reason.value for r in res.rejected]


def test_smoke_alarm_is_decoded_exactly() -> None:
    res = dec(SMOKE, {"ts": NOW - 1000, "seq": 7, "event": "alarm", "obscuration_db_m": 0.4, "extra": "kept out"})
    assert res.rejected == []
    (r,) = res.accepted
    assert (r.device_id, r.device_type, r.channel, r.ts, r.seq) == (
        "SM-0001",
        DeviceType.SMOKE,
        Channel.EVENT,
        NOW - 1000,
        7,
    )
    assert dict(r.values) == {"event": "alarm", "obscuration_db_m": 0.4}


def test_rfc3339_timestamp_with_offset() -> None:
    expected = int(datetime(2026, 11, 18, 8, 26, 40, tzinfo=UTC).timestamp() * 1000)
    for text in ("2026-11-18T16:26:40+08:00", "2026-11-18T08:26:40Z", "2026-11-18T08:26:40.000+00:00"):
        res = dec(SMOKE, {"ts": text, "event": "test"})
        assert [a.ts for a in res.accepted] == [expected], text


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("other/v1/smoke/SM-1/event", Reason.BAD_TOPIC),
        ("whistle/v1/smoke/SM-1", Reason.BAD_TOPIC),
        ("whistle/v1/gas/SM-1/event", Reason.UNKNOWN_TYPE),
        ("whistle/v1/smoke/SM 1/event", Reason.BAD_DEVICE_ID),
        ("whistle/v1/smoke/" + "x" * 65 + "/event", Reason.BAD_DEVICE_ID),
        ("whistle/v1/smoke/SM-1/video", Reason.UNKNOWN_CHANNEL),
        ("whistle/v1/smoke/SM-1/data", Reason.UNKNOWN_CHANNEL),
    ],
)
def test_topic_errors(topic: str, reason: Reason) -> None:
    res = dec(topic, {"ts": NOW, "event": "alarm"})
    assert res.accepted == [] and reasons(res) == [reason.value]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not utf8", Reason.NOT_UTF8),
        (b"{not json", Reason.NOT_JSON),
        (b"[1, 2]", Reason.NOT_OBJECT),
        (b'{"ts": NaN, "event": "alarm"}', Reason.NOT_FINITE),
        (b'{"ts": 1795000000000, "event": "alarm", "obscuration_db_m": Infinity}', Reason.NOT_FINITE),
        (b'{"ts": 1795000000000, "event": "alarm", "obscuration_db_m": 1e999}', Reason.NOT_FINITE),
        (b'{"event": "alarm"}', Reason.MISSING_FIELD),
        (b'{"ts": 1795000000000}', Reason.MISSING_FIELD),
        (b'{"ts": 1795000000000, "event": "boom"}', Reason.OUT_OF_RANGE),
        (b'{"ts": 1795000000000, "event": 3}', Reason.WRONG_TYPE),
        (b'{"ts": true, "event": "alarm"}', Reason.BAD_TIMESTAMP),
        (b'{"ts": "yesterday", "event": "alarm"}', Reason.BAD_TIMESTAMP),
        (b'{"ts": "2026-11-18T08:26:40", "event": "alarm"}', Reason.BAD_TIMESTAMP),
        (b'{"ts": 1795000660001, "event": "alarm"}', Reason.TS_IN_FUTURE),
        (b'{"ts": 1791000000000, "event": "alarm"}', Reason.TS_TOO_OLD),
        (b'{"ts": 1795000000000, "event": "alarm", "seq": -1}', Reason.WRONG_TYPE),
        (b'{"batch": {"ts": 1}}', Reason.BAD_BATCH),
    ],
)
def test_payload_errors(raw: bytes, reason: Reason) -> None:
    res = dec(SMOKE, None, raw=raw)
    assert res.accepted == []
    assert reasons(res) == [reason.value]
    assert res.rejected[0].payload == raw


def test_oversized_single_object() -> None:
    res = dec(SMOKE, {"ts": NOW, "event": "alarm", "pad": "x" * 20_000})
    assert reasons(res) == ["oversized"]
    assert len(res.rejected[0].payload) == 16 * 1024


def test_batch_too_large() -> None:
    res = dec("whistle/v1/water/WM-1/data", {"batch": [{"ts": NOW, "total_m3": 1.0}] * 1001})
    assert reasons(res) == ["batch_too_large"]


def test_batch_keeps_good_objects_and_rejects_bad_ones_individually() -> None:
    batch = [{"ts": NOW - 60_000 * i, "seq": i, "total_m3": 10.0 + i} for i in range(5)]
    batch[2] = {"ts": NOW, "seq": 2, "total_m3": -1}
    res = dec("whistle/v1/water/WM-000001/data", {"batch": batch})
    assert [a.seq for a in res.accepted] == [0, 1, 3, 4]
    assert reasons(res) == ["out_of_range"]
    assert res.rejected[0].detail.startswith("batch[2]:")
    assert json.loads(res.rejected[0].payload) == batch[2]
    assert res.batched  # its device uploads buffered readings (the offline rule judges it by its uploads)
    assert not dec("whistle/v1/water/WM-000001/data", batch[0]).batched


def test_boolean_is_not_a_number() -> None:
    res = dec("whistle/v1/power/PM-1/data", {"ts": NOW, "total_kwh": True})
    assert reasons(res) == ["wrong_type"]


def test_mqtt_will_without_ts_is_accepted_on_status() -> None:
    res = dec("whistle/v1/water/WM-1/status", {"online": False})
    (r,) = res.accepted
    assert r.ts == NOW and dict(r.values) == {"online": False}
    assert reasons(dec("whistle/v1/water/WM-1/status", {"online": True})) == ["missing_field"]


@pytest.mark.parametrize(
    ("topic", "payload", "values"),
    [
        ("whistle/v1/smoke/S-1/status", {"battery_pct": 87, "rssi_dbm": -90}, {"battery_pct": 87, "rssi_dbm": -90}),
        (
            "whistle/v1/elevator/E-1/event",
            {"event": "trapped", "code": 93, "floor": 4},
            {"event": "trapped", "code": 93, "floor": 4},
        ),
        (
            "whistle/v1/elevator/E-1/data",
            {"floor": 3, "moving": True, "door": "closed", "load_pct": 40},
            {"floor": 3, "moving": True, "door": "closed", "load_pct": 40},
        ),
        ("whistle/v1/elevator/E-1/status", {"online": True}, {"online": True}),
        ("whistle/v1/ebike/B-1/data", {"power_w": 182.5}, {"power_w": 182.5}),
        ("whistle/v1/ebike/B-1/event", {"event": "charging_detected"}, {"event": "charging_detected"}),
        ("whistle/v1/water/W-1/data", {"total_m3": 12.345, "flow_lph": 3}, {"total_m3": 12.345, "flow_lph": 3}),
        ("whistle/v1/power/P-1/data", {"total_kwh": 1234.5, "power_w": 300}, {"total_kwh": 1234.5, "power_w": 300}),
        ("whistle/v1/power/P-1/status", {"battery_pct": 50}, {"battery_pct": 50}),
    ],
)
def test_every_contract_type_and_channel(topic: str, payload: dict[str, object], values: dict[str, object]) -> None:
    res = dec(topic, {"ts": NOW, **payload})
    assert res.rejected == []
    assert dict(res.accepted[0].values) == values


def test_horizon_is_configurable() -> None:
    lim = Limits(horizon_ms=3_600_000)
    assert reasons(dec(SMOKE, {"ts": NOW - 3_600_001, "event": "alarm"}, limits=lim)) == ["ts_too_old"]
    assert dec(SMOKE, {"ts": NOW - 3_599_999, "event": "alarm"}, limits=lim).accepted


def test_a_non_finite_value_rejects_only_its_own_object_in_a_batch() -> None:
    res = dec(
        "whistle/v1/water/WM-1/data",
        None,
        raw=b'{"batch": [{"ts": 1795000000000, "total_m3": NaN}, {"ts": 1795000000000, "total_m3": 2.5}]}',
    )
    assert [dict(a.values) for a in res.accepted] == [{"total_m3": 2.5}]
    assert reasons(res) == ["not_finite"] and res.rejected[0].detail.startswith("batch[0]:")


def test_a_topic_parsed_before_gives_the_same_and_a_bad_one_is_refused_every_time() -> None:
    from collectors import codecs

    first = codecs.parse_topic("whistle/v1/water/WM-000001/data")
    assert (
        codecs.parse_topic("whistle/v1/water/WM-000001/data") == first == (DeviceType.WATER, "WM-000001", Channel.DATA)
    )
    for _ in range(2):
        assert reasons(dec("whistle/v1/water/WM 1/data", {"ts": NOW, "total_m3": 1.0})) == ["bad_device_id"]
    assert "whistle/v1/water/WM 1/data" not in codecs._TOPICS
