"""The grid worker's page over HTTP, on a real PostgreSQL: my tickets most urgent first with what and where, the
evidence in words, arriving with and without a position, Web Push subscriptions, notifications and their receipts
(HTTP and the live socket), the one-tap link (that one ticket acknowledged, nothing else) and SMS replies in the
documented callback formats of Tencent Cloud and Alibaba Cloud."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from alerts import links
from alerts.channels.webpush import b64url_encode, generate_vapid_keys, public_key_bytes
from alerts.service import AlertService
from api.app import create_app
from api.deps import ApiContext
from api.worker import WorkerOptions
from tests.api.test_dispatch_api import serve
from tests.helpers import small_registry
from whistle.domain import AlarmKind, Detection, Severity, SubjectType
from whistle.store.db import Database
from whistle.timeutil import HOUR_MS, now_ms

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPLY_KEY = "reply-key-0123456789abcdef"
W09_PHONE = "+8613900000001"
PUBLIC = generate_vapid_keys()[1]


class Client(httpx.AsyncClient):
    ctx: ApiContext
    tokens: dict[str, str]

    async def as_(self, user: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return await self.request(method, path, headers={"Authorization": f"Bearer {self.tokens[user]}"}, **kw)


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Client]:
    options = WorkerOptions(arrive_radius_m=200.0, vapid_public_key=PUBLIC, sms_reply_key=REPLY_KEY)
    ctx = ApiContext(db=db, alerts=AlertService(db), admin_token=TOKEN, roles=["api"], worker=options)
    async with Client(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://test", headers=AUTH) as c:
        c.ctx = ctx
        assert (await c.post("/api/v1/registry", json=small_registry())).status_code == 200
        c.tokens = {u: (await c.post(f"/api/v1/users/{u}/tokens")).json()["token"] for u in ("W-09", "W-17")}
        yield c


def detection(kind: AlarmKind, *, ts: int, source: str, **kw: Any) -> Detection:
    severity = {AlarmKind.SMOKE_FIRE: Severity.CRITICAL}.get(kind, Severity.MAJOR)
    defaults: dict[str, Any] = {
        "subject_type": SubjectType.BUILDING,
        "subject_id": "RJ-B0001",
        "building_id": "RJ-B0001",
        "grid_id": "RJ-G1-M01",
        "household_id": None,
        "evidence": {},
    }
    defaults.update(kw)
    return Detection(kind, severity, ts=ts, source_id=source, **defaults)


def fire(ts: int) -> Detection:
    evidence = {
        "detectors": ["SM-0001", "SM-0002"],
        "detectors_in_alarm": ["SM-0001", "SM-0002"],
        "confirmed": True,
        "first_alarm_ts": ts,
        "trigger": {"device_id": "SM-0002", "event": "alarm", "ts": ts},
    }
    return detection(AlarmKind.SMOKE_FIRE, ts=ts, source=f"SM-0002:{ts}", evidence=evidence)


def lone_elder(ts: int) -> Detection:
    evidence = {"quiet_since": ts - 14 * HOUR_MS, "quiet_hours": 14.0, "threshold_hours": 11.5, "basis": "routine_day"}
    return detection(
        AlarmKind.LONE_ELDER_INACTIVE,
        ts=ts,
        source=f"WM-000001:{ts}",
        subject_type=SubjectType.HOUSEHOLD,
        subject_id="RJ-H000001",
        household_id="RJ-H000001",
        evidence=evidence,
    )


def ebike(ts: int) -> Detection:
    return detection(
        AlarmKind.EBIKE_INDOOR_CHARGING,
        ts=ts,
        source=f"EB:{ts}",
        subject_type=SubjectType.HOUSEHOLD,
        subject_id="RJ-H000001",
        household_id="RJ-H000001",
        evidence={"source": "power", "duration_ms": 1_800_000, "peak_w": 180.0},
    )


def trapped(ts: int) -> Detection:
    """In RJ-B0002 (micro-grid 02, where the leader takes it): the admin arrives."""
    return Detection(
        AlarmKind.ELEVATOR_TRAPPED,
        Severity.CRITICAL,
        SubjectType.DEVICE,
        "EL-0002",
        ts,
        evidence={"event": "trapped", "floor": 7, "ts": ts},
        building_id="RJ-B0002",
        grid_id="RJ-G1-M02",
        source_id=f"EL-0002:{ts}",
    )


async def open_ticket(c: Client, d: Detection) -> str:
    res = await c.ctx.alerts.apply(d)
    assert res.ticket_id is not None
    return res.ticket_id


async def test_my_tickets_most_urgent_first_with_what_and_where_in_words(client: Client) -> None:
    t0 = now_ms()
    elder = await open_ticket(client, lone_elder(t0 - 60_000))  # major, older
    blaze = await open_ticket(client, fire(t0))  # critical, newer: first
    r = await client.as_("W-09", "GET", "/api/v1/me/tickets")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [w["ticket"]["id"] for w in body["items"]] == [blaze, elder] and body["now"]
    first = body["items"][0]
    assert (first["kind_label"], first["severity_label"], first["ticket"]["status"]) == ("火警", "紧急", "dispatched")
    assert first["ticket"]["code"] and first["ticket"]["code"].isdigit()
    place = first["place"]
    assert (place["address"], place["floors"], place["grid_name"]) == ("瑞金二路 1 弄 1 号", 6, "微网格01")
    assert place["location"] == [121.466, 31.213] and not place["has_contacts"]
    assert [d["location"] for d in place["devices"]] == ["public kitchen 1F", "corridor 3F"]
    assert "烟感报警：public kitchen 1F（SM-0001）、corridor 3F（SM-0002）" in first["evidence"]
    assert "2 个探测器先后报警，火情已确认" in first["evidence"]
    assert not any("{" in line for line in first["evidence"])  # words, not JSON
    second = client.tokens["W-17"]
    assert (await client.get("/api/v1/me/tickets", headers={"Authorization": f"Bearer {second}"})).json()["items"] == []


async def test_a_lone_elder_ticket_shows_the_unit_and_offers_the_contacts_logged(client: Client) -> None:
    tid = await open_ticket(client, lone_elder(now_ms()))
    r = await client.as_("W-09", "GET", f"/api/v1/tickets/{tid}/detail")
    assert r.status_code == 200, r.text
    w = r.json()
    assert (w["place"]["unit"], w["place"]["lone_elder"], w["place"]["has_contacts"]) == ("1-101", True, True)
    assert "+8613800000000" not in r.text  # the contact is read on purpose, not sent along
    assert w["evidence"][0].startswith("独居老人家中长时间没有用水用电的迹象")
    assert any(line.startswith("已安静 14 小时") for line in w["evidence"])
    contacts = await client.as_("W-09", "GET", f"/api/v1/tickets/{tid}/contacts")
    assert contacts.json()["contacts"][0]["phone"] == "+8613800000000"
    reads = (await client.get("/api/v1/audit/personal-data", params={"household_id": "RJ-H000001"})).json()
    assert [(x["actor"], x["ticket_id"]) for x in reads] == [("W-09", tid)]
    other = await client.as_("W-17", "GET", f"/api/v1/tickets/{tid}/detail")
    assert other.status_code == 200  # in W-17's micro-grid: readable; the contacts stay the assignee's
    assert (await client.as_("W-17", "GET", f"/api/v1/tickets/{tid}/contacts")).status_code == 403


async def test_arrive_checks_the_position_against_the_building_and_records_it_either_way(client: Client) -> None:
    near = await open_ticket(client, fire(now_ms()))  # RJ-B0001 at (121.466, 31.213)
    far = await open_ticket(client, lone_elder(now_ms()))  # its household lives in RJ-B0001 too
    r = await client.as_(
        "W-09", "POST", f"/api/v1/tickets/{near}/arrive", json={"lat": 31.2131, "lon": 121.4662, "accuracy_m": 15}
    )
    assert r.status_code == 200, r.text
    a = r.json()["arrival"]
    assert a["within_radius"] is True and 10 < a["distance_m"] < 40 and a["radius_m"] == 200 and a["located"]
    event = r.json()["history"][-1]
    assert event["action"] == "arrive" and event["data"]["within_radius"] is True
    assert event["data"]["position"] == {"lat": 31.2131, "lon": 121.4662, "accuracy_m": 15}
    r = await client.as_("W-09", "POST", f"/api/v1/tickets/{far}/arrive", json={"lat": 31.2300, "lon": 121.4700})
    assert r.status_code == 200  # recorded, not refused
    assert r.json()["arrival"]["within_radius"] is False and r.json()["arrival"]["distance_m"] > 1500
    blind = await open_ticket(client, ebike(now_ms()))
    r = await client.as_("W-09", "POST", f"/api/v1/tickets/{blind}/arrive", json={"note": "定位失败"})
    assert r.json()["arrival"] == {"distance_m": None, "radius_m": 200.0, "within_radius": None, "located": False}
    assert r.json()["history"][-1]["data"]["position"] is None and r.json()["status"] == "on_site"
    bad = await client.as_("W-09", "POST", f"/api/v1/tickets/{near}/arrive", json={"lat": 31.2})
    assert bad.status_code == 422  # a latitude without a longitude
    elsewhere = await open_ticket(client, trapped(now_ms()))
    plain = await client.post(f"/api/v1/tickets/{elsewhere}/arrive")
    assert plain.status_code == 200 and plain.json()["status"] == "on_site"  # CONTRACT.md §4: no body still works


def subscription(endpoint: str = "https://push.example.org/send/abc") -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec

    ua = ec.generate_private_key(ec.SECP256R1())
    keys = {"p256dh": b64url_encode(public_key_bytes(ua.public_key())), "auth": b64url_encode(b"0123456789abcdef")}
    return {"endpoint": endpoint, "expirationTime": None, "keys": keys}


async def test_push_subscriptions_are_kept_per_worker_with_the_key_to_make_them(client: Client) -> None:
    assert (await client.as_("W-09", "GET", "/api/v1/webpush/key")).json() == {"public_key": PUBLIC}
    sub = subscription()
    r = await client.as_("W-09", "POST", "/api/v1/me/push-subscriptions", json=sub)
    assert r.status_code == 201 and r.json() == {"endpoint": sub["endpoint"], "created": True}
    again = await client.as_("W-09", "POST", "/api/v1/me/push-subscriptions", json=sub)
    assert again.json()["created"] is False
    bad = {**sub, "keys": {"p256dh": "AAAA", "auth": "BBBB"}}
    assert (await client.as_("W-09", "POST", "/api/v1/me/push-subscriptions", json=bad)).status_code == 422
    ftp = {**sub, "endpoint": "ftp://push.example.org/x"}
    assert (await client.as_("W-09", "POST", "/api/v1/me/push-subscriptions", json=ftp)).status_code == 422
    params = {"endpoint": sub["endpoint"]}
    assert (await client.as_("W-17", "DELETE", "/api/v1/me/push-subscriptions", params=params)).status_code == 404
    assert (await client.as_("W-09", "DELETE", "/api/v1/me/push-subscriptions", params=params)).status_code == 204
    assert (await client.as_("W-09", "DELETE", "/api/v1/me/push-subscriptions", params=params)).status_code == 404


async def test_my_notifications_and_their_receipts_over_http_and_the_live_socket(client: Client, db: Database) -> None:
    tid = await open_ticket(client, fire(now_ms()))
    mine = (await client.as_("W-09", "GET", "/api/v1/me/notifications")).json()["items"]
    assert [(n["ticket_id"], n["kind"], n["seen_at"]) for n in mine] == [(tid, "smoke.fire", None)]
    assert (await client.as_("W-17", "GET", "/api/v1/me/notifications")).json()["items"] == []
    other = await client.as_("W-17", "POST", "/api/v1/me/notifications/receipts", json={"ids": [mine[0]["id"]]})
    assert other.json() == {"confirmed": 0}
    r = await client.as_("W-09", "POST", "/api/v1/me/notifications/receipts", json={"ids": [mine[0]["id"]]})
    assert r.json() == {"confirmed": 1}
    history = (await client.get(f"/api/v1/tickets/{tid}")).json()["history"]
    assert [(e["actor"], e["data"]["via"]) for e in history if e["action"] == "seen"] == [("W-09", "page")]

    second = await open_ticket(client, ebike(now_ms()))
    key = [
        n
        for n in (await client.as_("W-09", "GET", "/api/v1/me/notifications")).json()["items"]
        if n["ticket_id"] == second
    ]
    live = "{}?token=" + client.tokens["W-09"] + "&recipient_id=W-09"
    async with serve(client.ctx) as url, websockets.connect(live.format(url)) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
        await ws.send(json.dumps({"type": "receipt", "ids": [n["id"] for n in key]}))
        async with asyncio.timeout(5):
            while (doc := json.loads(await ws.recv()))["type"] != "receipt.ok":
                pass
        assert doc["seen"] == len(key) == 1
    seen = (await client.as_("W-09", "GET", "/api/v1/me/notifications")).json()["items"]
    assert all(n["seen_at"] for n in seen if n["ticket_id"] == second)


async def test_a_one_tap_link_acknowledges_its_ticket_as_its_assignee_and_nothing_else(
    client: Client, db: Database
) -> None:
    tid = await open_ticket(client, fire(now_ms()))
    other = await open_ticket(client, lone_elder(now_ms()))
    key = await client.ctx.worker.link_key(db)
    code = int((await client.get(f"/api/v1/tickets/{tid}")).json()["code"])
    exp = now_ms() + HOUR_MS
    token = links.sign(key, code=code, worker_id="W-09", assignment=0, expires_at=exp)
    anon = httpx.AsyncClient(transport=client._transport, base_url="http://test")  # no token, no cookie
    async with anon:
        r = await anon.get(f"/api/v1/one-tap/{token}")
        assert r.status_code == 200, r.text
        o = r.json()
        assert (o["ticket_id"], o["worker_id"], o["status"], o["can_ack"]) == (tid, "W-09", "dispatched", True)
        assert o["address"] == "瑞金二路 1 弄 1 号" and "history" not in o and "contacts" not in o
        mine = (await client.as_("W-09", "GET", "/api/v1/me/notifications")).json()["items"]
        assert [n["seen_at"] is not None for n in mine if n["ticket_id"] == tid] == [True]  # opened from the message
        r = await anon.post(f"/api/v1/one-tap/{token}/ack")
        assert r.status_code == 200 and r.json()["status"] == "acknowledged" and not r.json()["can_ack"]
        assert "set-cookie" not in r.headers  # no session: the link signs nobody in
        assert (await anon.post(f"/api/v1/one-tap/{token}/ack")).status_code == 409
        # nothing else: not the API with it as a token, not another ticket, not another worker, not after expiry
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await anon.get("/api/v1/tickets", headers=bearer)).status_code == 401
        assert (await anon.post(f"/api/v1/tickets/{tid}/arrive", headers=bearer)).status_code == 401
        assert (await anon.post(f"/api/v1/one-tap/{token}/arrive")).status_code in (404, 405)
        ocode = int((await client.get(f"/api/v1/tickets/{other}")).json()["code"])
        forged = (
            token[:1] + links.sign(key, code=ocode, worker_id="W-09", assignment=0, expires_at=exp)[1:12] + token[12:]
        )
        assert (await anon.get(f"/api/v1/one-tap/{forged}")).status_code == 404  # another code, this MAC
        as_w17 = links.sign(key, code=ocode, worker_id="W-17", assignment=0, expires_at=exp)
        assert (await anon.get(f"/api/v1/one-tap/{as_w17}")).status_code == 404  # W-17 is not its assignee
        wrong_key = links.sign(b"x" * 32, code=ocode, worker_id="W-09", assignment=0, expires_at=exp)
        assert (await anon.get(f"/api/v1/one-tap/{wrong_key}")).status_code == 404
        expired = links.sign(key, code=ocode, worker_id="W-09", assignment=0, expires_at=now_ms() - 120_000)
        assert (await anon.get(f"/api/v1/one-tap/{expired}")).status_code == 410
        assert (await anon.get("/api/v1/one-tap/not-a-token")).status_code == 404
        fresh = links.sign(key, code=ocode, worker_id="W-09", assignment=0, expires_at=exp)
        assert (await anon.get(f"/api/v1/one-tap/{fresh}")).status_code == 200
        await client.post(f"/api/v1/tickets/{other}/reassign", json={"assignee_id": "W-17"})
        assert (await anon.get(f"/api/v1/one-tap/{fresh}")).status_code == 404  # reassigned: the old link is dead
    history = (await client.get(f"/api/v1/tickets/{tid}")).json()["history"]
    ack = [e for e in history if e["action"] == "ack"]
    assert [(e["actor"], e["data"]["via"]) for e in ack] == [("W-09", "one_tap")]


async def test_an_sms_reply_of_the_code_from_the_assignee_acknowledges(client: Client, db: Database) -> None:
    tid = await open_ticket(client, fire(now_ms()))
    elder = await open_ticket(client, lone_elder(now_ms()))
    code = (await client.get(f"/api/v1/tickets/{tid}")).json()["code"]
    anon = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    async with anon:
        tencent = f"/api/v1/sms/replies/tencent?key={REPLY_KEY}"
        reply = {"extend": "", "mobile": "13900000000", "nationcode": "86", "sign": "数字吹哨", "text": code, "time": 1}
        r = await anon.post(tencent, json=reply)  # W-17's phone: not the assignee's
        assert r.json() == {"result": 0, "errmsg": "OK"}
        assert (await client.get(f"/api/v1/tickets/{tid}")).json()["status"] == "dispatched"
        r = await anon.post(tencent, json={**reply, "mobile": "13900000001", "text": f"收到 {code}"})
        assert r.json() == {"result": 0, "errmsg": "OK"}
        t = (await client.get(f"/api/v1/tickets/{tid}")).json()
        assert t["status"] == "acknowledged"
        assert [(e["actor"], e["data"].get("via")) for e in t["history"] if e["action"] == "ack"] == [
            ("W-09", "sms_reply")
        ]
        ecode = (await client.get(f"/api/v1/tickets/{elder}")).json()["code"]
        push = [{"phone_number": "13900000001", "content": f"{ecode}收到", "send_time": "2026-11-24 10:15:00",
                 "dest_code": "1234", "sequence_id": 1234567890}]  # fmt: skip
        r = await anon.post(f"/api/v1/sms/replies/aliyun?key={REPLY_KEY}", json=push)
        assert r.status_code == 200 and r.json() == {"code": 0, "msg": "接收成功"}
        assert (await client.get(f"/api/v1/tickets/{elder}")).json()["status"] == "acknowledged"
        assert (await anon.post("/api/v1/sms/replies/aliyun?key=wrong", json=push)).status_code == 403
        assert (await anon.post("/api/v1/sms/replies/tencent", json=reply)).status_code == 403
    async with db.connection() as conn:
        rows = await (await conn.execute("SELECT provider, phone, outcome FROM sms_replies ORDER BY id")).fetchall()
    assert rows == [
        ("tencent", "+86139****0000", "unknown_code"),
        ("tencent", "+86139****0001", "acknowledged"),
        ("aliyun", "+86139****0001", "acknowledged"),
    ]
