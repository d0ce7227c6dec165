"""The worker page's pure parts, without I/O: one-tap tokens, the evidence in words, the arrival check, the
providers' reply callbacks, and when a handover waits for its receipt."""

from __future__ import annotations

import json

import pytest

from alerts import links
from alerts.arrival import Position, check, distance_m
from alerts.channels.delivery import ReceiptPolicy, awaits_receipt
from alerts.evidence import explain
from alerts.replies import Provider, aliyun_replies, code_of, e164, tencent_replies
from whistle.domain import AlarmKind, Severity

KEY = bytes(range(32))
EXP = 1_795_486_500_000  # 2026-11-24 10:15 +08:00


def test_a_one_tap_token_is_27_characters_and_reads_back() -> None:
    token = links.sign(KEY, code=1042, worker_id="W-17", assignment=0, expires_at=EXP)
    assert len(token) == 27 and token.isascii()
    read = links.read(token)
    assert read is not None and read.code == 1042 and read.expires_at >= EXP and read.expires_at - EXP < 60_000
    assert read.valid_for(KEY, worker_id="W-17", assignment=0)
    assert not read.expired(EXP - 1) and read.expired(read.expires_at)


def test_a_one_tap_token_holds_for_one_worker_one_assignment_one_key() -> None:
    read = links.read(links.sign(KEY, code=1042, worker_id="W-17", assignment=0, expires_at=EXP))
    assert read is not None
    assert not read.valid_for(KEY, worker_id="W-09", assignment=0)  # another worker
    assert not read.valid_for(KEY, worker_id="W-17", assignment=1)  # the ticket was reassigned since
    assert not read.valid_for(b"\x00" * 32, worker_id="W-17", assignment=0)  # another deployment's key


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x" * 27,
        "!" * 27,
        "AgAAAAAEEmN4rYUf0Wg8mQ2bTz1k",
        "AQAAAAAEEmN4rYUf0Wg8mQ2bTz",
        "AQAAAAAEEmN4rYUf0Wg8mQ2bTz1kk",
    ],
)
def test_what_is_not_a_token_reads_as_none(bad: str) -> None:
    assert links.read(bad) is None


def test_a_tampered_code_or_expiry_fails_the_mac() -> None:
    token = links.sign(KEY, code=1042, worker_id="W-17", assignment=0, expires_at=EXP)
    raw = bytearray(links._unb64(token))
    for index in (6, 9):  # a byte of the code, a byte of the expiry
        changed = bytearray(raw)
        changed[index] ^= 1
        read = links.read(links._b64(bytes(changed)))
        assert read is not None and not read.valid_for(KEY, worker_id="W-17", assignment=0)
    raw[0] = 2  # a version this code does not know
    assert links.read(links._b64(bytes(raw))) is None


def test_links_point_to_the_page_and_the_one_tap_route() -> None:
    made = links.Links("https://dw.example.gov.cn", KEY, ttl_ms=3_600_000)
    assert made.ticket_page("t-1") == "https://dw.example.gov.cn/m/#/t/t-1"
    url = made.one_tap(code=1042, worker_id="W-17", assignment=2, now=EXP)
    token = url.removeprefix("https://dw.example.gov.cn/m/a/")
    read = links.read(token)
    assert read is not None and read.valid_for(KEY, worker_id="W-17", assignment=2)
    assert 3_600_000 <= read.expires_at - EXP < 3_660_000


def test_the_evidence_of_a_fire_in_words() -> None:
    ev = {
        "detectors": ["SM-1", "SM-2"],
        "detectors_in_alarm": ["SM-1", "SM-2"],
        "confirmed": True,
        "first_alarm_ts": EXP,
        "trigger": {"device_id": "SM-2", "event": "alarm", "ts": EXP},
    }
    lines = explain(AlarmKind.SMOKE_FIRE, ev, {"SM-1": "2F 公共厨房"})
    assert lines == ["烟感报警：2F 公共厨房（SM-1）、SM-2", "2 个探测器先后报警，火情已确认", "首次报警：11-24 10:15"]


def test_the_evidence_of_other_kinds_in_words_and_unknown_fields_left_out() -> None:
    assert explain(AlarmKind.ELEVATOR_TRAPPED, {"event": "trapped", "floor": 7, "ts": EXP})[:2] == [
        "电梯困人：轿厢内有人被困，请立即联系维保并到场安抚",
        "所在楼层：7 层",
    ]
    water = explain(AlarmKind.WATER_CONTINUOUS_FLOW, {"hours": 6.5, "litres": 780.0, "litres_per_hour": 120.0,
                                                      "lone_elder": True, "since": EXP})  # fmt: skip
    assert "已持续 6.5 小时（自 11-24 10:15 起）" in water and "累计约 780 升，每小时约 120 升" in water
    rental = explain(
        AlarmKind.GROUP_RENTAL_SUSPECTED,
        {"registered_occupants": 2, "water_m3_per_day": 0.95, "water_m3_expected": 0.3, "implied_occupants": 6.3,
         "score": 3.2, "pattern": "volume"},
    )  # fmt: skip
    assert rental == ["用水用电与登记人数不符，疑似群租，请核实居住人数", "日均用水 0.95 吨，登记 2 人应约 0.30 吨",
                      "按用水推算约 6 人居住"]  # fmt: skip
    offline = explain(AlarmKind.DEVICE_OFFLINE, {"device_type": "water", "last_event_ts": EXP, "allowed_s": 90000})
    assert offline == ["水表长时间没有上报，可能断电、没电、信号差或被拆", "最后一次上报：11-24 10:15"]
    for kind in AlarmKind:  # every kind says something, and never JSON
        for line in explain(kind, {"anything": {"nested": 1}}):
            assert "{" not in line and "anything" not in line


def test_the_arrival_check() -> None:
    building = (121.466, 31.213)
    assert distance_m((121.466, 31.213), (121.466, 31.214)) == pytest.approx(111.2, abs=0.5)  # 0.001° of latitude
    near = check(Position(31.2131, 121.4661, 15), building, 200)
    assert near.within is True and near.distance_m is not None and near.distance_m < 20
    far = check(Position(31.2300, 121.4700), building, 200)
    assert far.within is False and far.distance_m is not None and far.distance_m > 1500
    assert check(None, building, 200).within is None and check(Position(31.2, 121.4), None, 200).within is None
    assert check(None, building, 200).to_json() == {
        "position": None,
        "distance_m": None,
        "radius_m": 200,
        "within_radius": None,
        "building_located": True,
    }


def test_the_providers_reply_callbacks_as_documented() -> None:
    tencent = {"extend": "", "mobile": "13900000001", "nationcode": "86", "sign": "数字吹哨", "text": "1042",
               "time": 1457336869}  # fmt: skip
    [t] = tencent_replies(tencent)
    assert (t.provider, t.phone, t.text, t.sent_at) == (Provider.TENCENT, "+8613900000001", "1042", 1_457_336_869_000)
    assert len(tencent_replies([tencent, tencent])) == 2
    aliyun = json.loads(
        '[{"phone_number": "13900000001", "content": "收到1042", "send_time": "2017-09-01 00:00:00",'
        ' "dest_code": "1234", "sequence_id": 1234567890}]'
    )
    [a] = aliyun_replies(aliyun)
    assert (a.provider, a.phone, a.text, a.sent_at) == (
        Provider.ALIYUN,
        "+8613900000001",
        "收到1042",
        1_504_195_200_000,
    )
    with pytest.raises(ValueError):
        tencent_replies("not an object")


@pytest.mark.parametrize(
    ("number", "country", "phone"),
    [
        ("13900000001", "86", "+8613900000001"),
        ("+8613900000001", "86", "+8613900000001"),
        ("8613900000001", "86", "+8613900000001"),
        ("008613900000001", "86", "+8613900000001"),
        ("91234567", "852", "+85291234567"),
        ("", "86", None),
        ("12", "86", None),
    ],
)
def test_numbers_as_e164(number: str, country: str, phone: str | None) -> None:
    assert e164(number, country) == phone


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1042", "1042"),
        ("收到 1042", "1042"),
        ("１０４２好的", "1042"),
        ("好的", None),
        ("12", None),
        ("13900000001", "13900000001"),
    ],
)
def test_the_code_in_a_reply(text: str, code: str | None) -> None:
    assert code_of(text) == code


def test_when_a_handover_waits_for_its_receipt() -> None:
    receipt = ReceiptPolicy()
    assert awaits_receipt("live", Severity.CRITICAL, receipt, has_next=True)
    assert awaits_receipt("webpush", Severity.CRITICAL, receipt, has_next=True)
    assert not awaits_receipt("live", Severity.CRITICAL, receipt, has_next=False)  # nothing to fall over to
    assert not awaits_receipt("live", Severity.MAJOR, receipt, has_next=True)
    assert not awaits_receipt("sms.aliyun", Severity.CRITICAL, receipt, has_next=True)  # SMS confirms no display
    assert not awaits_receipt("live", Severity.CRITICAL, None, has_next=True)
