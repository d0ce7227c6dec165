"""The endpoint × role table of docs/PERMISSIONS.md, walked against `whistle serve` running as its own process.

The registry is posted over HTTP; named accounts are created and every role's token issued over the API; the
tickets are made by smoke detectors and e-bike sensors publishing to a real Mosquitto. Then every endpoint of
the table is called as every role (and without a token): `allow` and `scope` succeed on a thing in the caller's
scope, `scope` is 404 (or absent from a list) outside it, `own` is 403 on a ticket in scope that is not theirs,
`deny` is 403, `401` is 401. Beyond the table: a grid worker of one micro-grid cannot list, read, acknowledge or
be notified live of another micro-grid's tickets; the `screen` user acts on nothing and is sent no phone number
unmasked (while the operations center, with the same requests, is); every read of a household's contacts is in
the personal-data log; the audit trail names the real users.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from app.broker import free_port
from evaluation.frontdoor.processes import mqtt_subscriptions
from simulators.live import Publisher
from tests.conftest import MosquittoBroker
from tests.helpers import wait_for
from tests.permission_table import Row, read_table
from whistle.mqtt import MqttEndpoint
from whistle.privacy import PHONE_IN_TEXT
from whistle.timeutil import now_ms

EXE = Path(sys.executable).with_name("whistle")
BOOT = "permissions-walk-bootstrap-9f8e7d6c5b4a"

# The user who plays each role (named accounts are created; workers come from the registry).
ROLE_USERS = {
    "admin": "ADM-1",
    "ops_center": "OPS-1",
    "screen": "SCR-1",
    "integration": "INT-1",
    "street_center": "W-CENTER",
    "grid_leader": "W-LEAD",
    "grid_worker": "W-A",
    "property": "W-PROP",
    "elevator_maintainer": "W-ELEV",
}
NAMED = {"ADM-1": "admin", "OPS-1": "ops_center", "SCR-1": "screen", "INT-1": "integration", "U-SPARE": "screen"}
ALL_GRIDS = {"ADM-1", "OPS-1", "SCR-1", "INT-1", "W-CENTER"}  # their scope is the whole street
IN, OUT = "G1-M01", "G2-M03"  # a grid in every scoped walker's scope, and one in none of theirs
CONTACT_PHONE = "+8613800000001"
TYPED_PHONE = "+8613812345678"
N_M01, N_M02, N_M03 = 72, 6, 6
LINK_SECRET = "walk-link-secret-5f1e9a7c3b2d4e6f8a0b1c2d"
REPLY_KEY = "walk-reply-key-8c7b6a5d4e3f"


def walk_registry() -> dict[str, Any]:
    grids = [
        {"id": "G1", "street_id": "RJ", "parent_id": None, "name": "第一综合网格"},
        {"id": "G1-M01", "street_id": "RJ", "parent_id": "G1", "name": "微网格01"},
        {"id": "G1-M02", "street_id": "RJ", "parent_id": "G1", "name": "微网格02"},
        {"id": "G2", "street_id": "RJ", "parent_id": None, "name": "第二综合网格"},
        {"id": "G2-M03", "street_id": "RJ", "parent_id": "G2", "name": "微网格03"},
    ]
    buildings, devices = [], []
    for grid, n in (("G1-M01", N_M01), ("G1-M02", N_M02), ("G2-M03", N_M03)):
        tag = grid[-2:]
        for i in range(1, n + 1):
            bid = f"B{tag}-{i:02d}"
            buildings.append({"id": bid, "grid_id": grid, "address": f"瑞金二路 {tag} 弄 {i} 号", "floors": 6})
            devices.append({"id": f"SM{tag}-{i:02d}", "type": "smoke", "building_id": bid, "location": "corridor"})
    households = []
    for hid, building, phone in (
        ("H01", "B01-01", CONTACT_PHONE),
        ("H01B", "B01-02", "+8613800000002"),
        ("H03", "B03-01", "+8613800000003"),
        ("HERASE", "B01-03", "+8613800000004"),
    ):
        households.append(
            {
                "id": hid,
                "building_id": building,
                "unit": "1-101",
                "registered_occupants": 1,
                "tags": ["lone_elder", "rental"],
                "contacts": [{"name": "王小明", "phone": phone, "relation": "daughter"}],
            }
        )
        devices.append({"id": f"EB-{hid}", "type": "ebike", "household_id": hid})
    devices.append({"id": "WM-H01", "type": "water", "household_id": "H01"})
    devices += [{"id": f"RET-{i}", "type": "smoke", "building_id": "B01-04"} for i in range(1, 4)]
    phone = iter(range(10, 99))
    workers = [
        {"id": wid, "name": name, "phone": f"+86139000000{next(phone)}", "grid_id": grid, "role": role}
        for wid, name, grid, role in (
            ("W-A", "李小红", "G1-M01", "grid_worker"),
            ("W-A2", "赵小兰", "G1-M01", "grid_worker"),
            ("W-B", "钱小军", "G1-M02", "grid_worker"),
            ("W-C", "孙小平", "G2-M03", "grid_worker"),
            ("W-LEAD", "张大伟", "G1", "grid_leader"),
            ("W-LEAD2", "周大海", "G2", "grid_leader"),
            ("W-CENTER", "城运值班", None, "street_center"),
            ("W-PROP", "物业老吴", "G1-M01", "property"),
            ("W-ELEV", "电梯老郑", "G1-M01", "elevator_maintainer"),
            ("W-OFF1", "离职甲", "G1-M01", "grid_worker"),
            ("W-OFF2", "离职乙", "G1-M01", "grid_worker"),
        )
    ]
    return {
        "streets": [{"id": "RJ", "name": "瑞金二路街道"}],
        "grids": grids,
        "buildings": buildings,
        "households": households,
        "devices": devices,
        "workers": workers,
    }


@pytest.fixture
async def serve(mosquitto: MosquittoBroker, db_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """`whistle serve` as its own process on the session's Mosquitto and a fresh database."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env.update(
        WHISTLE_MQTT_URL=mosquitto.url,
        WHISTLE_DATABASE_URL=db_url,
        WHISTLE_ADMIN_TOKEN=BOOT,
        WHISTLE_HTTP=f"127.0.0.1:{port}",
        WHISTLE_STATE_DIR=str(tmp_path / "state"),
        WHISTLE_MQTT_CLIENT_ID=f"walk-{uuid.uuid4().hex[:8]}",
        WHISTLE_RATE_LOGIN_PER_MIN="200",  # the walk signs in as every role from one address
        WHISTLE_LINK_SECRET=LINK_SECRET,  # the walk signs one-tap links itself
        WHISTLE_SMS_REPLY_KEY=REPLY_KEY,
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(str(EXE), "serve", env=env, stdout=out, stderr=out)
    try:

        async def up() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"whistle serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if mqtt_subscriptions(log.read_text()) < 2:
                return False
            try:
                async with httpx.AsyncClient(timeout=5) as probe:
                    return (await probe.get(f"http://127.0.0.1:{port}/api/v1/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, timeout=90, interval=0.2)
        yield f"http://127.0.0.1:{port}"
        text = log.read_text(errors="replace")
        assert BOOT not in text, "the configured admin token was printed or logged"
        assert CONTACT_PHONE not in text and TYPED_PHONE not in text, "a phone number reached the log unmasked"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@dataclass
class Walk:
    base: str
    http: httpx.AsyncClient
    mqtt: MqttEndpoint
    tokens: dict[str, str] = field(default_factory=dict)  # by user id
    pool: dict[str, list[str]] = field(default_factory=dict)  # dispatched tickets by grid, not yet used
    fixed: dict[str, str] = field(default_factory=dict)  # named tickets: read_in, out, victim, hh_in, ...
    alarm_of: dict[str, str] = field(default_factory=dict)  # ticket id -> its alarm id
    silences: dict[str, int] = field(default_factory=dict)
    seen_by: dict[str, list[str]] = field(default_factory=dict)  # every body sent to a user (the phone check)
    counter: int = 0

    def auth(self, user: str | None) -> dict[str, str]:
        token = BOOT if user == "BOOT" else self.tokens.get(user or "")
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, user: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        r = await self.http.request(method, path, headers={**self.auth(user), **kw.pop("headers", {})}, **kw)
        if user is not None:
            self.seen_by.setdefault(user, []).append(r.text)
        return r

    async def boot(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.call("BOOT", method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def take(self, grid: str) -> str:
        assert self.pool[grid], f"the walk ran out of tickets in {grid}"
        return self.pool[grid].pop()

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    async def assign(self, ticket_id: str, worker: str) -> None:
        current = (await self.boot("GET", f"/api/v1/tickets/{ticket_id}"))["assignee_id"]
        if current != worker:
            await self.boot("POST", f"/api/v1/tickets/{ticket_id}/reassign", json={"assignee_id": worker})


def window(hours: float = 1.0) -> dict[str, str]:
    now = datetime.now(UTC)
    return {"start": (now - timedelta(minutes=1)).isoformat(), "end": (now + timedelta(hours=hours)).isoformat()}


# -- one call per row: (walk, user, where) -> response; where is "in", "out" or "not_own" ------------------------

Call = Callable[[Walk, str | None, str], Awaitable[httpx.Response]]


def get(path: str) -> Call:
    async def call(w: Walk, user: str | None, where: str) -> httpx.Response:
        return await w.call(user, "GET", path)

    return call


def with_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"whistle_session={value}"}


async def session_open(w: Walk, user: str | None, where: str) -> httpx.Response:
    token = w.tokens[user] if user else w.tokens["OPS-1"]
    async with httpx.AsyncClient(base_url=w.base, timeout=30) as browser:
        r = await browser.post("/api/v1/session", json={"token": token})
    if r.status_code == 200:
        cookie = r.cookies.get("whistle_session")
        assert cookie, r.headers
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        me = await w.http.get("/api/v1/me", headers=with_cookie(cookie))
        assert me.status_code == 200 and me.json()["id"] == (user or "OPS-1") and me.json()["via"] == "session"
    return r


async def session_close(w: Walk, user: str | None, where: str) -> httpx.Response:
    headers: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=w.base, timeout=30) as browser:
        if user is not None:
            opened = await browser.post("/api/v1/session", json={"token": w.tokens[user]})
            assert opened.status_code == 200, opened.text
            headers = with_cookie(opened.cookies["whistle_session"])
        browser.cookies.clear()
        r = await browser.delete("/api/v1/session", headers=headers)
    if headers:
        assert (await w.http.get("/api/v1/me", headers=headers)).status_code == 401, "a closed session still works"
    return r


async def me(w: Walk, user: str | None, where: str) -> httpx.Response:
    r = await w.call(user, "GET", "/api/v1/me")
    if r.status_code == 200:
        assert r.json()["id"] == user
    return r


async def users_post(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/users", json={"id": w.next_id("U"), "name": "新账号", "role": "screen"})


async def users_delete(w: Walk, user: str | None, where: str) -> httpx.Response:
    target = "U-SPARE"
    if user == ROLE_USERS["admin"]:
        target = w.next_id("U-DEL")
        await w.boot("POST", "/api/v1/users", json={"id": target, "name": "临时", "role": "screen"})
    return await w.call(user, "DELETE", f"/api/v1/users/{target}")


async def tokens_post(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/users/W-A2/tokens", json={"label": "walk"})


async def tokens_delete(w: Walk, user: str | None, where: str) -> httpx.Response:
    target = "U-SPARE"
    if user == ROLE_USERS["admin"]:
        target = w.next_id("U-REV")
        await w.boot("POST", "/api/v1/users", json={"id": target, "name": "临时", "role": "screen"})
        token = (await w.boot("POST", f"/api/v1/users/{target}/tokens"))["token"]
        r = await w.call(user, "DELETE", f"/api/v1/users/{target}/tokens")
        assert r.json()["revoked"] == 1
        gone = await w.http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert gone.status_code == 401, "a revoked token still works"
        return r
    return await w.call(user, "DELETE", f"/api/v1/users/{target}/tokens")


async def password_put(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "PUT", "/api/v1/users/U-SPARE/password", json={"password": "correct horse 42 battery"})


async def registry_post(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/registry", json={"streets": [{"id": "RJ", "name": "瑞金二路街道"}]})


def listing(path: str, key: Callable[[Walk, str], str], field_name: str = "id") -> Call:
    """A list endpoint: `in` must list the in-scope thing; `out` must not list the out-of-scope thing."""

    async def call(w: Walk, user: str | None, where: str) -> httpx.Response:
        r = await w.call(user, "GET", path, params={"limit": 1000} if "tickets" in path or "alarms" in path else {})
        if r.status_code == 200:
            body = r.json()
            items = body["items"] if isinstance(body, dict) else body
            ids = {str(i[field_name]) for i in items}
            wanted = key(w, where)
            if where == "in":
                assert wanted in ids, f"{user}: {path} does not list {wanted}"
            elif where == "out":
                assert wanted not in ids, f"{user}: {path} lists {wanted}, outside the caller's scope"
            elif where == "out-visible":
                assert wanted in ids, f"{user}: {path} hides {wanted}, though the caller sees every grid"
        return r

    return call


async def ticket_get(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "GET", f"/api/v1/tickets/{w.fixed['read_in' if where == 'in' else 'out']}")


async def contacts_get(w: Walk, user: str | None, where: str) -> httpx.Response:
    if where == "out":
        ticket = w.fixed["hh_out"]
    elif where == "not_own":
        ticket = w.fixed["hh_other"]
    else:
        ticket = w.fixed["hh_in"]
        if user is not None and user.startswith("W-") and user != "W-CENTER":
            await w.assign(ticket, user)
    r = await w.call(user, "GET", f"/api/v1/tickets/{ticket}/contacts")
    if r.status_code == 200:
        assert r.json()["contacts"][0]["phone"] in (CONTACT_PHONE, "+8613800000002"), r.text
    return r


def action(verb: str, body: Callable[[Walk, str], Any] | None = None, prepare: str = "") -> Call:
    """A ticket action: `in` on a fresh dispatched ticket of the in-scope grid (resolved first for close)."""

    async def call(w: Walk, user: str | None, where: str) -> httpx.Response:
        if where == "out":
            ticket = w.fixed["out"]
        elif user is None or user not in ALLOWED_ACTORS[verb]:
            ticket = w.fixed["victim"]
        else:
            ticket = w.take(IN)
            if prepare == "resolve":
                await w.boot("POST", f"/api/v1/tickets/{ticket}/resolve", json={"outcome": "false_alarm"})
            elif prepare == "to_a2":
                await w.assign(ticket, "W-A2")
        payload = body(w, ticket) if body else None
        return await w.call(user, "POST", f"/api/v1/tickets/{ticket}/{verb}", json=payload)

    return call


ALLOWED_ACTORS: dict[str, set[str]] = {}  # verb -> users the table lets act (filled from the table)


async def live_connect(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await ws_status(w, user, recipient=None)


async def live_other_recipient(w: Walk, user: str | None, where: str) -> httpx.Response:
    if user is not None and user in w.tokens and user not in {"INT-1"}:
        assert (await ws_status(w, user, recipient=user)).status_code == 200, f"{user} cannot claim itself"
    return await ws_status(w, user, recipient="W-B")


async def ws_status(w: Walk, user: str | None, *, recipient: str | None) -> httpx.Response:
    """A WebSocket handshake as a response: 200 accepted (the hello arrived), 403 refused."""
    url = w.base.replace("http", "ws") + "/api/v1/live"
    params = [f"token={w.tokens[user]}"] if user else []
    if recipient:
        params.append(f"recipient_id={recipient}")
    try:
        async with websockets.connect(url + ("?" + "&".join(params) if params else "")) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hello["type"] == "hello"
            return httpx.Response(200)
    except websockets.exceptions.InvalidStatus as exc:
        assert exc.response.status_code == 403
        return httpx.Response(403)


async def roster_get(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "GET", f"/api/v1/grids/{IN if where == 'in' else OUT}/roster")


async def roster_put(w: Walk, user: str | None, where: str) -> httpx.Response:
    grid, worker = (IN, "W-A2") if where == "in" else (OUT, "W-C")
    day = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "00:00"}
    return await w.call(user, "PUT", f"/api/v1/grids/{grid}/roster", json={"shifts": [{"worker_id": worker, **day}]})


def silence_body(where: str, *, life_safety: bool) -> dict[str, Any]:
    building = "B01-05" if where == "in" else "B03-05"
    kinds = ["smoke.fire"] if life_safety else ["smoke.low_battery"]
    extra = {"life_safety": True} if life_safety else {}
    return {"scope_type": "building", "scope_id": building, "kinds": kinds, "reason": "演练", **extra, **window()}


async def silence_post(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/silences", json=silence_body(where, life_safety=False))


async def silence_post_life_safety(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/silences", json=silence_body(where, life_safety=True))


async def silence_delete(w: Walk, user: str | None, where: str) -> httpx.Response:
    if where == "out":
        return await w.call(user, "DELETE", f"/api/v1/silences/{w.silences['out']}")
    made = await w.boot("POST", "/api/v1/silences", json=silence_body("in", life_safety=False))
    return await w.call(user, "DELETE", f"/api/v1/silences/{made['id']}")


async def device_get(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "GET", f"/api/v1/devices/{'SM01-01' if where == 'in' else 'SM03-01'}")


async def device_retire(w: Walk, user: str | None, where: str) -> httpx.Response:
    device = {"ADM-1": "RET-1", "INT-1": "RET-2"}.get(user or "", "RET-3")
    return await w.call(user, "POST", f"/api/v1/devices/{device}/retire", json={"reason": "换新"})


def household(suffix: str, method: str = "GET", body: Callable[[], Any] | None = None) -> Call:
    async def call(w: Walk, user: str | None, where: str) -> httpx.Response:
        hid = "H01" if where == "in" else "H03"
        return await w.call(user, method, f"/api/v1/households/{hid}{suffix}", json=body() if body else None)

    return call


async def erasure(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/households/HERASE/erasure", json={"reason": "本人申请删除"})


async def offboard(w: Walk, user: str | None, where: str) -> httpx.Response:
    worker = "W-OFF1" if user == "ADM-1" else "W-OFF2"
    return await w.call(user, "POST", f"/api/v1/workers/{worker}/offboard", json={"reason": "调岗"})


def _absence() -> dict[str, str]:
    return {**window(24), "note": "住院"}


def features(
    path: str, key: Callable[[Walk, str], str], *, items: str, field_name: str, params: dict[str, Any]
) -> Call:
    """A read of the screens that lists places or alarms: in scope listed, out of scope absent (as `listing`)."""

    async def call(w: Walk, user: str | None, where: str) -> httpx.Response:
        r = await w.call(user, "GET", path, params=params)
        if r.status_code == 200:
            ids = {str(i[field_name]) for i in r.json()[items]}
            wanted = key(w, where)
            if where == "in":
                assert wanted in ids, f"{user}: {path} does not show {wanted}"
            elif where == "out":
                assert wanted not in ids, f"{user}: {path} shows {wanted}, outside the caller's scope"
            elif where == "out-visible":
                assert wanted in ids, f"{user}: {path} hides {wanted}, though the caller sees every grid"
        return r

    return call


def _ticket_of(where: str) -> str:
    return "read_in" if where == "in" else "out"


async def worker_assessment(w: Walk, user: str | None, where: str) -> httpx.Response:
    ticket = await w.boot("GET", f"/api/v1/tickets/{w.fixed[_ticket_of(where)]}")
    assignee = str(ticket["assignee_id"])
    return await features(
        "/api/v1/stats/workers", lambda _w, _where: assignee, items="items", field_name="worker_id", params={}
    )(w, user, where)


async def building_get(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "GET", f"/api/v1/buildings/{'B01-05' if where == 'in' else 'B03-05'}")


async def history_export(w: Walk, user: str | None, where: str) -> httpx.Response:
    ticket = w.fixed[_ticket_of(where)]
    return await w.call(user, "GET", f"/api/v1/tickets/{ticket}/history/export", params={"format": "csv"})


async def job_post(w: Walk, user: str | None, where: str) -> httpx.Response:
    # a day with nothing stored: the rules role takes the request and answers at once
    return await w.call(user, "POST", "/api/v1/jobs/household-days", json={"from": "2020-01-01", "to": "2020-01-01"})


async def my_tickets(w: Walk, user: str | None, where: str) -> httpx.Response:
    r = await w.call(user, "GET", "/api/v1/me/tickets")
    if r.status_code == 200:
        assert all(i["ticket"]["assignee_id"] == user for i in r.json()["items"]), f"{user} listed others' tickets"
        if user == ROLE_USERS["grid_worker"]:
            assert r.json()["items"], "the grid worker's own open tickets are not listed"
    return r


async def ticket_detail(w: Walk, user: str | None, where: str) -> httpx.Response:
    r = await w.call(user, "GET", f"/api/v1/tickets/{w.fixed['read_in' if where == 'in' else 'out']}/detail")
    if r.status_code == 200:
        assert r.json()["place"]["address"] and CONTACT_PHONE not in r.text
    return r


async def receipts_post(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/me/notifications/receipts", json={"ids": ["not-a-notification"]})


def push_subscription(user: str | None) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from alerts.channels.webpush import b64url_encode, public_key_bytes

    ua = ec.generate_private_key(ec.SECP256R1())
    return {
        "endpoint": f"https://push.example.org/walk/{user}/{uuid.uuid4().hex}",
        "keys": {"p256dh": b64url_encode(public_key_bytes(ua.public_key())), "auth": b64url_encode(b"w" * 16)},
    }


async def push_post(w: Walk, user: str | None, where: str) -> httpx.Response:
    return await w.call(user, "POST", "/api/v1/me/push-subscriptions", json=push_subscription(user))


async def push_delete(w: Walk, user: str | None, where: str) -> httpx.Response:
    sub = push_subscription(user)
    await w.call(user, "POST", "/api/v1/me/push-subscriptions", json=sub)
    return await w.call(user, "DELETE", "/api/v1/me/push-subscriptions", params={"endpoint": sub["endpoint"]})


async def one_tap_token(w: Walk, ticket: str) -> str:
    from alerts.links import sign

    t = await w.boot("GET", f"/api/v1/tickets/{ticket}")
    reassigned = sum(1 for e in t["history"] if e["action"] in ("reassign", "transfer"))
    return sign(
        LINK_SECRET.encode(),
        code=int(t["code"]),
        worker_id=t["assignee_id"],
        assignment=reassigned,
        expires_at=now_ms() + 3_600_000,
    )


async def one_tap_get(w: Walk, user: str | None, where: str) -> httpx.Response:
    token = await one_tap_token(w, w.fixed["read_in"])
    r = await w.call(user, "GET", f"/api/v1/one-tap/{token}")
    if r.status_code == 200:
        assert r.json()["ticket_id"] == w.fixed["read_in"] and "history" not in r.json()
    return r


async def one_tap_ack(w: Walk, user: str | None, where: str) -> httpx.Response:
    ticket = w.take(IN)
    token = await one_tap_token(w, ticket)
    r = await w.call(user, "POST", f"/api/v1/one-tap/{token}/ack")
    if r.status_code == 200:  # acknowledged as its assignee, whoever tapped
        t = await w.boot("GET", f"/api/v1/tickets/{ticket}")
        assert t["status"] == "acknowledged" and t["history"][-1]["actor"] == t["assignee_id"]
    return r


def sms_reply(provider: str) -> Call:
    async def call(w: Walk, user: str | None, where: str) -> httpx.Response:
        body: Any = (
            {"mobile": "13700000000", "nationcode": "86", "text": "1001", "sign": "数字吹哨", "time": 1, "extend": ""}
            if provider == "tencent"
            else [{"phone_number": "13700000000", "content": "1001", "send_time": "2026-11-24 10:15:00",
                   "dest_code": "1", "sequence_id": 1}]
        )  # fmt: skip
        return await w.call(user, "POST", f"/api/v1/sms/replies/{provider}?key={REPLY_KEY}", json=body)

    return call


CALLS: dict[str, Call] = {
    "GET /api/v1/health": get("/api/v1/health"),
    "GET /metrics": get("/metrics"),
    "GET /": get("/"),
    "GET /api/docs": get("/api/docs"),
    "GET /api/openapi.json": get("/api/openapi.json"),
    "GET /docs/oauth2-redirect": get("/docs/oauth2-redirect"),
    "GET /redoc": get("/redoc"),
    "POST /api/v1/session": session_open,
    "DELETE /api/v1/session": session_close,
    "GET /api/v1/me": me,
    "POST /api/v1/users": users_post,
    "GET /api/v1/users": get("/api/v1/users"),
    "GET /api/v1/users/{user_id}": get("/api/v1/users/SCR-1"),
    "DELETE /api/v1/users/{user_id}": users_delete,
    "POST /api/v1/users/{user_id}/tokens": tokens_post,
    "DELETE /api/v1/users/{user_id}/tokens": tokens_delete,
    "PUT /api/v1/users/{user_id}/password": password_put,
    "POST /api/v1/registry": registry_post,
    "GET /api/v1/alarms": listing(
        "/api/v1/alarms", lambda w, where: w.alarm_of[w.fixed["read_in" if where == "in" else "out"]]
    ),
    "GET /api/v1/tickets": listing("/api/v1/tickets", lambda w, where: w.fixed["read_in" if where == "in" else "out"]),
    "GET /api/v1/tickets/{ticket_id}": ticket_get,
    "GET /api/v1/tickets/{ticket_id}/contacts": contacts_get,
    "POST /api/v1/tickets/{ticket_id}/ack": action("ack"),
    "POST /api/v1/tickets/{ticket_id}/arrive": action("arrive", lambda w, t: {"note": "到场"}),
    "POST /api/v1/tickets/{ticket_id}/resolve": action("resolve", lambda w, t: {"outcome": "confirmed"}),
    "POST /api/v1/tickets/{ticket_id}/comments": action("comments", lambda w, t: {"note": "已联系物业"}),
    "POST /api/v1/tickets/{ticket_id}/close": action("close", prepare="resolve"),
    "POST /api/v1/tickets/{ticket_id}/reassign": action(
        "reassign", lambda w, t: {"assignee_id": "W-A"}, prepare="to_a2"
    ),
    "POST /api/v1/tickets/{ticket_id}/transfer": action("transfer", lambda w, t: {"grid_id": "G1-M02"}),
    "WS /api/v1/live": live_connect,
    "WS /api/v1/live?recipient_id=<someone else>": live_other_recipient,
    "GET /api/v1/grids/{grid_id}/roster": roster_get,
    "PUT /api/v1/grids/{grid_id}/roster": roster_put,
    "GET /api/v1/silences": listing("/api/v1/silences", lambda w, where: str(w.silences[where.split("-")[0]])),
    "POST /api/v1/silences": silence_post,
    "POST /api/v1/silences (life safety)": silence_post_life_safety,
    "DELETE /api/v1/silences/{silence_id}": silence_delete,
    "GET /api/v1/dead-letters": get("/api/v1/dead-letters"),
    "GET /api/v1/devices/unregistered": get("/api/v1/devices/unregistered"),
    "GET /api/v1/devices/{device_id}/usage": get("/api/v1/devices/WM-H01/usage?since=2026-01-01T00:00:00Z"),
    "GET /api/v1/devices/{device_id}": device_get,
    "POST /api/v1/devices/{device_id}/retire": device_retire,
    "GET /api/v1/households/{household_id}": household(""),
    "POST /api/v1/households/{household_id}/absences": household("/absences", "POST", _absence),
    "GET /api/v1/households/{household_id}/absences": household("/absences"),
    "DELETE /api/v1/households/{household_id}/tags/{tag}": household("/tags/rental", "DELETE"),
    "POST /api/v1/households/{household_id}/erasure": erasure,
    "GET /api/v1/workers": listing("/api/v1/workers", lambda w, where: "W-A" if where == "in" else "W-C"),
    "POST /api/v1/workers/{worker_id}/offboard": offboard,
    "GET /api/v1/audit": get("/api/v1/audit"),
    "GET /api/v1/audit/personal-data": get("/api/v1/audit/personal-data"),
    "GET /api/v1/map": features(
        "/api/v1/map", lambda w, where: IN if where == "in" else OUT, items="features", field_name="id", params={}
    ),
    "GET /api/v1/buildings/{building_id}": building_get,
    "GET /api/v1/screen/config": get("/api/v1/screen/config"),
    "GET /api/v1/stats/summary": get("/api/v1/stats/summary"),
    "GET /api/v1/stats/trends": get("/api/v1/stats/trends"),
    "GET /api/v1/stats/ticker": features(
        "/api/v1/stats/ticker",
        lambda w, where: w.alarm_of[w.fixed[_ticket_of(where)]],
        items="items",
        field_name="id",
        params={"limit": 200},
    ),
    "GET /api/v1/stats/grids": features(
        "/api/v1/stats/grids",
        lambda w, where: IN if where == "in" else OUT,
        items="items",
        field_name="grid_id",
        params={},
    ),
    "GET /api/v1/stats/workers": worker_assessment,
    "GET /api/v1/stats/grids/export": get("/api/v1/stats/grids/export?format=csv"),
    "GET /api/v1/stats/workers/export": get("/api/v1/stats/workers/export?format=csv"),
    "GET /api/v1/tickets/{ticket_id}/history/export": history_export,
    "POST /api/v1/jobs/household-days": job_post,
    "GET /api/v1/jobs/household-days": get("/api/v1/jobs/household-days"),
    "GET /api/v1/pipeline": get("/api/v1/pipeline"),
    "GET /m/": get("/m/"),
    "GET /m/a/{token}": get("/m/a/AQAAAAAD6QAbjfhQ0Wg8mQ2bTz1k"),
    "GET /api/v1/me/tickets": my_tickets,
    "GET /api/v1/tickets/{ticket_id}/detail": ticket_detail,
    "GET /api/v1/me/notifications": get("/api/v1/me/notifications"),
    "POST /api/v1/me/notifications/receipts": receipts_post,
    "GET /api/v1/webpush/key": get("/api/v1/webpush/key"),
    "POST /api/v1/me/push-subscriptions": push_post,
    "DELETE /api/v1/me/push-subscriptions": push_delete,
    "GET /api/v1/one-tap/{token}": one_tap_get,
    "POST /api/v1/one-tap/{token}/ack": one_tap_ack,
    "POST /api/v1/sms/replies/tencent": sms_reply("tencent"),
    "POST /api/v1/sms/replies/aliyun": sms_reply("aliyun"),
}
LISTS = {
    "GET /api/v1/alarms",
    "GET /api/v1/tickets",
    "GET /api/v1/silences",
    "GET /api/v1/workers",
    "GET /api/v1/map",
    "GET /api/v1/stats/ticker",
    "GET /api/v1/stats/grids",
    "GET /api/v1/stats/workers",
}


async def setup(w: Walk) -> None:
    """Registry over HTTP, accounts and tokens over the API, tickets from devices over MQTT."""
    r = await w.http.post("/api/v1/registry", json=walk_registry(), headers=w.auth("BOOT"))
    assert r.status_code == 200, r.text
    for user_id, role in NAMED.items():
        await w.boot("POST", "/api/v1/users", json={"id": user_id, "name": f"{role} 账号", "role": role})
    for user_id in {*ROLE_USERS.values(), "W-B", "U-SPARE"}:
        w.tokens[user_id] = (await w.boot("POST", f"/api/v1/users/{user_id}/tokens", json={"label": "walk"}))["token"]
    pub = Publisher(w.mqtt, f"walk-{uuid.uuid4().hex[:6]}")
    await pub.start()
    try:
        ts = now_ms()
        buildings = [f"01-{i:02d}" for i in range(5, N_M01)] + [f"02-{i:02d}" for i in range(1, N_M02)]
        buildings += [f"03-{i:02d}" for i in range(1, N_M03)]
        for b in buildings:
            pub.publish(f"whistle/v1/smoke/SM{b}/event", {"ts": ts, "seq": 1, "event": "alarm"})
        for hid in ("H01", "H01B", "H03"):
            pub.publish(f"whistle/v1/ebike/EB-{hid}/event", {"ts": ts, "seq": 1, "event": "charging_detected"})
        expected = len(buildings) + 3

        async def all_tickets() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await w.boot("GET", "/api/v1/tickets", params={"limit": 1000}))["items"]
            return items if len(items) >= expected else []

        tickets = await wait_for(all_tickets, timeout=90, interval=0.3)
    finally:
        await pub.stop()
    for t in tickets:
        w.alarm_of[t["id"]] = t["alarm_ids"][0]
        if t["kind"] == "smoke.fire":
            w.pool.setdefault(t["grid_id"], []).append(t["id"])
    by_household = {}
    for t in tickets:
        if t["kind"] == "ebike.indoor_charging":
            found = await w.boot("GET", "/api/v1/alarms?kind=ebike.indoor_charging&limit=100")
            hh = {a["id"]: a["household_id"] for a in found["items"]}
            by_household[hh[t["alarm_ids"][0]]] = t["id"]
    w.fixed.update(
        read_in=w.take(IN),
        out=w.take(OUT),
        victim=w.take(IN),
        hh_in=by_household["H01"],
        hh_other=by_household["H01B"],
        hh_out=by_household["H03"],
    )
    await w.assign(w.fixed["hh_other"], "W-A2")
    # A worker types a phone number into a note: the screen must get it masked, the operations center in full.
    note = {"note": f"家属电话 {TYPED_PHONE}"}
    r = await w.call("W-A", "POST", f"/api/v1/tickets/{w.fixed['read_in']}/comments", json=note)
    assert r.status_code == 201, r.text
    for where in ("in", "out"):
        made = await w.boot("POST", "/api/v1/silences", json=silence_body(where, life_safety=False))
        w.silences[where] = made["id"]


def expected_outcomes(row: Row, role: str) -> list[tuple[str, int | None]]:
    """(where, status) pairs a cell promises for the role's walker (None: a 2xx)."""
    cell = row.cells[role]
    user = ROLE_USERS.get(role)
    if cell == "401":
        return [("in", 403 if row.method == "WS" else 401)]
    if cell == "deny":
        return [("in", 403)]
    out: list[tuple[str, int | None]] = [("in", None)]
    scoped = user is not None and user not in ALL_GRIDS
    if cell == "own":
        out = [("in", None), ("not_own", 403)]
    if cell in ("scope", "own") and scoped and row.method != "WS":
        out.append(("out", None if row.key in LISTS else 404))
    if cell == "allow" and row.key in LISTS and role not in ("anonymous", "integration"):
        out.append(("out-visible", None))
    return out


async def test_the_permission_table_holds_against_a_running_service(serve: str, mosquitto: MosquittoBroker) -> None:
    roles, rows = read_table()
    assert set(CALLS) == {r.key for r in rows}, "every row of docs/PERMISSIONS.md has a call in this walk"
    for row in rows:
        verb = row.path.rsplit("/", 1)[-1]
        if row.path.startswith("/api/v1/tickets/{ticket_id}/") and row.method == "POST":
            ALLOWED_ACTORS[verb] = {ROLE_USERS[r] for r in roles if r in ROLE_USERS and row.cells[r] != "deny"}
    async with httpx.AsyncClient(base_url=serve, timeout=30) as http:
        w = Walk(serve, http, MqttEndpoint.parse(mosquitto.url))
        await setup(w)
        failures: list[str] = []
        for row in rows:
            for role in roles:
                user = ROLE_USERS.get(role)
                for where, status in expected_outcomes(row, role):
                    r = await CALLS[row.key](w, user, where)
                    ok = 200 <= r.status_code < 300 if status is None else r.status_code == status
                    if not ok:
                        failures.append(
                            f"{row.key} as {role} ({where}): got {r.status_code}, expected "
                            f"{'2xx' if status is None else status}: {r.text[:200]}"
                        )
        assert not failures, "\n".join(failures)
        await grid_worker_of_another_grid(w)
        await screen_sees_no_phone(w)
        await contact_reads_and_actors_are_on_record(w)


async def grid_worker_of_another_grid(w: Walk) -> None:
    """W-B works micro-grid G1-M02: G1-M01's tickets are not listed, not readable, not acknowledgeable, and
    their changes never reach W-B's live connection (while W-A of G1-M01 and the screen get them)."""
    ticket = w.take(IN)
    listed = await w.call("W-B", "GET", "/api/v1/tickets", params={"limit": 1000})
    assert ticket not in {t["id"] for t in listed.json()["items"]}
    assert {t["grid_id"] for t in listed.json()["items"]} <= {"G1-M02"}
    assert (await w.call("W-B", "GET", f"/api/v1/tickets/{ticket}")).status_code == 404
    assert (await w.call("W-B", "POST", f"/api/v1/tickets/{ticket}/ack")).status_code == 404
    assert (await w.call("W-B", "GET", f"/api/v1/tickets/{ticket}/contacts")).status_code == 404
    alarms = (await w.call("W-B", "GET", "/api/v1/alarms", params={"limit": 1000})).json()["items"]
    assert w.alarm_of[ticket] not in {a["id"] for a in alarms}

    url = w.base.replace("http", "ws") + "/api/v1/live"
    async with httpx.AsyncClient(base_url=w.base, timeout=30) as browser:  # W-B's page signed in: a cookie
        cookie = (await browser.post("/api/v1/session", json={"token": w.tokens["W-B"]})).cookies["whistle_session"]
    conns = {
        "W-A": await websockets.connect(f"{url}?token={w.tokens['W-A']}&recipient_id=W-A"),
        "W-B": await websockets.connect(
            f"{url}?recipient_id=W-B", additional_headers={"Cookie": f"whistle_session={cookie}"}
        ),
        "SCR-1": await websockets.connect(f"{url}?token={w.tokens['SCR-1']}"),
    }
    try:
        for ws in conns.values():
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        # a change in G1-M01, then a marker in G1-M02 that W-B does get: nothing of G1-M01 may come before it
        await w.boot("POST", f"/api/v1/tickets/{ticket}/comments", json={"note": "M01 的事"})
        m02 = w.take("G1-M02")
        await w.boot("POST", f"/api/v1/tickets/{m02}/comments", json={"note": "M02 的标记"})
        got: dict[str, list[dict[str, Any]]] = {}
        for user, ws in conns.items():
            got[user] = []
            async with asyncio.timeout(20):
                while not any(m.get("ticket_id") == m02 for m in got[user]) and not (
                    user == "W-A" and any(m.get("ticket_id") == ticket for m in got[user])
                ):
                    got[user].append(json.loads(await ws.recv()))
        assert any(m.get("ticket_id") == ticket for m in got["W-A"]), got["W-A"]
        assert any(m.get("ticket_id") == ticket for m in got["SCR-1"]), got["SCR-1"]
        assert not any(m.get("ticket_id") == ticket for m in got["W-B"]), got["W-B"]
        assert all(m.get("grid_id") in (None, "G1-M02") for m in got["W-B"]), got["W-B"]
        w.seen_by.setdefault("SCR-1", []).extend(json.dumps(m, ensure_ascii=False) for m in got["SCR-1"])
    finally:
        for ws in conns.values():
            await ws.close()


def unmasked_phones(texts: list[str]) -> set[str]:
    return {m.group(0) for t in texts for m in PHONE_IN_TEXT.finditer(t)}


async def screen_sees_no_phone(w: Walk) -> None:
    """Everything sent to the screen user, over the whole walk, has no phone number in full; the operations
    center, sent the same pages, does see them (so the check would find one if it were there)."""
    for user in ("SCR-1", "OPS-1"):
        for path in ("/api/v1/tickets?limit=1000", "/api/v1/workers", f"/api/v1/tickets/{w.fixed['read_in']}"):
            await w.call(user, "GET", path)
    screen = unmasked_phones(w.seen_by["SCR-1"])
    assert screen == set(), f"the screen was sent phone numbers in full: {sorted(screen)}"
    ops = unmasked_phones(w.seen_by["OPS-1"])
    assert TYPED_PHONE in ops and any(p.startswith("+86139") for p in ops), ops
    masked = (await w.call("SCR-1", "GET", f"/api/v1/tickets/{w.fixed['read_in']}")).json()
    assert any("+86138****5678" in (e["note"] or "") for e in masked["history"]), masked["history"]


async def contact_reads_and_actors_are_on_record(w: Walk) -> None:
    reads = await w.boot("GET", "/api/v1/audit/personal-data", params={"household_id": "H01", "limit": 1000})
    readers = {r["actor"] for r in reads}
    assert {"ADM-1", "OPS-1", "W-CENTER", "W-LEAD", "W-A", "W-PROP", "W-ELEV"} <= readers, readers
    assert all(r["ticket_id"] == w.fixed["hh_in"] for r in reads)
    history = (await w.boot("GET", f"/api/v1/tickets/{w.fixed['read_in']}"))["history"]
    assert any(e["action"] == "comment" and e["actor"] == "W-A" for e in history), history
    actions = {(e["actor"], e["action"]) for e in await w.boot("GET", "/api/v1/audit", params={"limit": 1000})}
    for expected in (
        ("admin", "registry.import"),
        ("admin", "user.create"),
        ("admin", "token.issue"),
        ("ADM-1", "token.revoke"),
        ("ADM-1", "device.retire"),
        ("INT-1", "device.retire"),
        ("ADM-1", "worker.offboard"),
        ("ADM-1", "household.erase"),
        ("W-LEAD", "roster.replace"),
        ("W-LEAD", "silence.create"),
        ("W-CENTER", "silence.end"),
        ("W-A", "absence.declare"),
        ("INT-1", "household.tag_removed"),
    ):
        assert expected in actions, f"{expected} not in the audit trail"
    assert not re.search(CONTACT_PHONE.replace("+", r"\+"), json.dumps(await w.boot("GET", "/api/v1/audit")))
