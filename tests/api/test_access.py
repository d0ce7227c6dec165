"""Accounts, tokens, sessions and limits over HTTP, on a real PostgreSQL: tokens expire and are revoked, passwords
are checked and set by an admin, a browser session is an HttpOnly SameSite=Strict cookie, sign-ins and writes are
rate-limited, bodies are capped, a household's contacts are read only on one's own ticket and every read is
logged, life-safety silences are explicit and bounded."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from alerts.service import AlertService
from api.app import create_app
from api.deps import AccessConfig, ApiContext
from tests.helpers import small_registry, wait_for
from whistle.domain import AlarmKind, Detection, Severity, SubjectType
from whistle.store.db import Database
from whistle.timeutil import now_ms

TOKEN = "access-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def make_client(db: Database, **access: Any) -> AsyncIterator[httpx.AsyncClient]:
    ctx = ApiContext(db=db, alerts=AlertService(db), admin_token=TOKEN, roles=["api"], access=AccessConfig(**access))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://test") as c:
        c.ctx = ctx  # type: ignore[attr-defined]
        assert (await c.post("/api/v1/registry", json=small_registry(), headers=ADMIN)).status_code == 200
        yield c


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(db) as c:
        yield c


async def token_of(client: httpx.AsyncClient, user: str, **body: Any) -> str:
    r = await client.post(f"/api/v1/users/{user}/tokens", json=body or None, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def test_named_accounts_are_created_and_listed_with_the_registry_workers(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/users", json={"id": "OPS-1", "name": "值班长", "role": "ops_center"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert (
        await client.post("/api/v1/users", json={"id": "OPS-1", "name": "x", "role": "screen"}, headers=ADMIN)
    ).status_code == 409
    # a named account cannot take a registry worker's id, the bootstrap admin's, nor a worker's role
    assert (
        await client.post("/api/v1/users", json={"id": "W-17", "name": "x", "role": "screen"}, headers=ADMIN)
    ).status_code == 409
    assert (
        await client.post("/api/v1/users", json={"id": "admin", "name": "x", "role": "admin"}, headers=ADMIN)
    ).status_code == 422
    bad_role = {"id": "X-1", "name": "x", "role": "grid_worker"}
    assert (await client.post("/api/v1/users", json=bad_role, headers=ADMIN)).status_code == 422
    listed = {u["id"]: u for u in (await client.get("/api/v1/users", headers=ADMIN)).json()}
    assert listed["OPS-1"]["kind"] == "account" and listed["W-17"]["kind"] == "worker"
    assert listed["W-17"]["role"] == "grid_worker" and listed["W-17"]["active"]


async def test_tokens_are_shown_once_expire_and_are_revoked(client: httpx.AsyncClient, db: Database) -> None:
    token = await token_of(client, "W-17")
    me = await client.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["id"] == "W-17" and me.json()["scope"]["grid_ids"] == ["RJ-G1-M01"]
    async with db.connection() as conn:
        stored = await (await conn.execute("SELECT token_hash FROM api_tokens")).fetchall()
    assert all(token not in row[0] for row in stored), "the token is kept in clear"
    assert (await client.get("/api/v1/users/W-17", headers=ADMIN)).json()["active_tokens"] == 1
    short = await token_of(client, "W-17", ttl_days=0.000002)  # 0.17 s

    async def expired() -> bool:
        return (await client.get("/api/v1/me", headers=bearer(short))).status_code == 401

    await wait_for(expired, timeout=10, interval=0.1)
    r = await client.delete("/api/v1/users/W-17/tokens", headers=ADMIN)
    assert r.json() == {"user_id": "W-17", "revoked": 2}
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401
    assert (await client.post("/api/v1/users/NOPE/tokens", headers=ADMIN)).status_code == 404


async def test_passwords_are_set_by_an_admin_and_a_session_is_a_strict_cookie(client: httpx.AsyncClient) -> None:
    for weak in ("short", "password1234", "aaaaaaaaaaaaaaaa"):
        r = await client.put("/api/v1/users/W-17/password", json={"password": weak}, headers=ADMIN)
        assert r.status_code == 422, (weak, r.text)
    good = "Grid-17 walks at dawn"
    assert (await client.put("/api/v1/users/W-17/password", json={"password": good}, headers=ADMIN)).status_code == 204
    assert (
        await client.post("/api/v1/session", json={"user": "W-17", "password": "wrong one entirely"})
    ).status_code == 401
    r = await client.post("/api/v1/session", json={"user": "W-17", "password": good})
    assert r.status_code == 200 and r.json()["id"] == "W-17" and r.json()["via"] == "password"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    session = r.cookies["whistle_session"]
    jar = {"Cookie": f"whistle_session={session}"}
    client.cookies.clear()
    assert (await client.get("/api/v1/me", headers=jar)).json()["via"] == "session"
    # a cookie is not accepted from another site's page for a write
    tid = await open_ticket(client)
    cross = {**jar, "Origin": "https://evil.example", "Host": "test"}
    assert (await client.post(f"/api/v1/tickets/{tid}/ack", headers=cross)).status_code == 403
    same = {**jar, "Origin": "http://test"}
    assert (await client.post(f"/api/v1/tickets/{tid}/ack", headers=same)).status_code == 200
    # a password reset ends the sessions; signing out ends this one
    again = "Another long sentence 2"
    assert (await client.put("/api/v1/users/W-17/password", json={"password": again}, headers=ADMIN)).status_code == 204
    assert (await client.get("/api/v1/me", headers=jar)).status_code == 401
    r = await client.post("/api/v1/session", json={"user": "W-17", "password": again})
    jar = {"Cookie": f"whistle_session={r.cookies['whistle_session']}"}
    client.cookies.clear()
    assert (await client.delete("/api/v1/session", headers=jar)).status_code == 204
    assert (await client.get("/api/v1/me", headers=jar)).status_code == 401
    audit = (await client.get("/api/v1/audit", params={"target_id": "W-17"}, headers=ADMIN)).json()
    actions = [e["action"] for e in audit]
    assert {"password.set", "password.reset", "sign_in.failed", "sign_in.ok", "session.open"} <= set(actions)
    assert good not in str(audit) and again not in str(audit) and "wrong one entirely" not in str(audit)


async def test_sign_ins_and_writes_are_rate_limited(db: Database) -> None:
    async with make_client(db, rate_login_per_min=3, rate_write_per_min=2) as c:
        codes = [(await c.post("/api/v1/session", json={"token": f"dw_guess{i}"})).status_code for i in range(5)]
        assert codes[:3] == [401, 401, 401] and codes[3] == 429, codes
        limited = await c.post("/api/v1/session", json={"token": "dw_guess"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        worker = await token_of(c, "W-09")
        tid = await open_ticket(c)
        notes = [
            (await c.post(f"/api/v1/tickets/{tid}/comments", json={"note": f"{i}"}, headers=bearer(worker))).status_code
            for i in range(3)
        ]
        assert notes == [201, 201, 429], notes
        # reads are not limited, and the admin has room above the ordinary rate
        assert (await c.get(f"/api/v1/tickets/{tid}", headers=bearer(worker))).status_code == 200
        for i in range(5):
            assert (
                await c.post(f"/api/v1/tickets/{tid}/comments", json={"note": f"a{i}"}, headers=ADMIN)
            ).status_code == 201


async def test_request_bodies_are_capped(db: Database) -> None:
    async with make_client(db, max_body_bytes=2000, max_registry_bytes=200_000) as c:
        tid = await open_ticket(c)
        big = await c.post(f"/api/v1/tickets/{tid}/comments", json={"note": "x" * 3000}, headers=ADMIN)
        assert big.status_code == 413, big.text

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"note": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        streamed = await c.post(
            f"/api/v1/tickets/{tid}/comments",
            content=chunks(),
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413, streamed.text
        assert (await c.post("/api/v1/registry", json=small_registry(), headers=ADMIN)).status_code == 200


def fire(ts: int, *, building: str = "RJ-B0001", grid: str = "RJ-G1-M01") -> Detection:
    return Detection(
        AlarmKind.SMOKE_FIRE,
        Severity.CRITICAL,
        SubjectType.BUILDING,
        building,
        ts,
        evidence={"detectors": ["SM-0001"]},
        building_id=building,
        grid_id=grid,
        source_id=f"SM-0001:{ts}:{building}",
    )


def lone_elder(ts: int) -> Detection:
    return Detection(
        AlarmKind.LONE_ELDER_INACTIVE,
        Severity.MAJOR,
        SubjectType.HOUSEHOLD,
        "RJ-H000001",
        ts,
        evidence={"quiet_h": 9.5},
        household_id="RJ-H000001",
        building_id="RJ-B0001",
        grid_id="RJ-G1-M01",
        source_id=f"WM-000001:{ts}",
    )


async def open_ticket(client: httpx.AsyncClient, d: Detection | None = None) -> str:
    res = await client.ctx.alerts.apply(d or fire(now_ms()))  # type: ignore[attr-defined]
    assert res.ticket_id is not None
    return res.ticket_id


async def test_contacts_are_read_only_on_ones_own_ticket_and_every_read_is_logged(client: httpx.AsyncClient) -> None:
    tid = await open_ticket(client, lone_elder(now_ms()))
    assignee = (await client.get(f"/api/v1/tickets/{tid}", headers=ADMIN)).json()["assignee_id"]
    other = "W-17" if assignee == "W-09" else "W-09"
    mine, theirs = await token_of(client, assignee), await token_of(client, other)
    r = await client.get(f"/api/v1/tickets/{tid}/contacts", headers=bearer(mine))
    assert r.status_code == 200, r.text
    assert r.json()["contacts"] == [{"name": "王某", "phone": "+8613800000000", "relation": "daughter"}]
    assert (await client.get(f"/api/v1/tickets/{tid}/contacts", headers=bearer(theirs))).status_code == 403
    # the household itself shows them masked, to everyone in scope
    masked = (await client.get("/api/v1/households/RJ-H000001", headers=bearer(theirs))).json()["contacts"]
    assert masked == [{"name": "王*", "phone": "+86138****0000", "relation": "daughter"}]
    reads = (await client.get("/api/v1/audit/personal-data", headers=ADMIN)).json()
    assert [(x["actor"], x["household_id"], x["ticket_id"]) for x in reads] == [(assignee, "RJ-H000001", tid)]


async def test_life_safety_silences_are_explicit_bounded_explained_and_audited(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    win = {"start": now.isoformat(), "end": (now + timedelta(hours=2)).isoformat()}
    base = {"scope_type": "building", "scope_id": "RJ-B0001", "reason": "电梯年检", **win}
    for body in (
        {**base, "kinds": ["elevator.trapped"]},  # no flag
        {**base},  # every kind, no flag
        {**base, "kinds": ["smoke.fire"], "life_safety": True, "reason": ""},  # no reason
        {**base, "kinds": ["smoke.fire"], "life_safety": True, "end": (now + timedelta(hours=5)).isoformat()},
    ):
        r = await client.post("/api/v1/silences", json=body, headers=ADMIN)
        assert r.status_code == 422, (body, r.text)
    ok = await client.post(
        "/api/v1/silences", json={**base, "kinds": ["smoke.fire"], "life_safety": True}, headers=ADMIN
    )
    assert ok.status_code == 201 and ok.json()["life_safety"] is True
    plain = await client.post("/api/v1/silences", json={**base, "kinds": ["smoke.low_battery"]}, headers=ADMIN)
    assert plain.status_code == 201 and plain.json()["life_safety"] is False
    leader = await token_of(client, "W-LEAD")
    denied = await client.post(
        "/api/v1/silences", json={**base, "kinds": ["smoke.fire"], "life_safety": True}, headers=bearer(leader)
    )
    assert denied.status_code == 403
    assert (await client.delete(f"/api/v1/silences/{ok.json()['id']}", headers=bearer(leader))).status_code == 204
    audit = (await client.get("/api/v1/audit", params={"target_type": "silence"}, headers=ADMIN)).json()
    assert [(e["actor"], e["action"]) for e in audit] == [
        ("W-LEAD", "silence.end"),
        ("admin", "silence.create"),
        ("admin", "silence.create"),
    ]
    ended = [s for s in (await client.get("/api/v1/silences?active=false", headers=ADMIN)).json() if s["ended_by"]]
    assert [s["ended_by"] for s in ended] == ["W-LEAD"]


async def test_a_configurable_life_safety_maximum(db: Database) -> None:
    async with make_client(db, life_safety_silence_max_s=1800.0) as c:
        now = datetime.now(UTC)
        body = {
            "scope_type": "grid",
            "scope_id": "RJ-G1",
            "kinds": ["elevator.trapped"],
            "life_safety": True,
            "reason": "维保",
            "start": now.isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
        }
        r = await c.post("/api/v1/silences", json=body, headers=ADMIN)
        assert r.status_code == 422 and "0.5 h" in r.text


def test_access_config_follows_the_settings() -> None:
    from whistle.settings import Settings

    cfg = AccessConfig.from_settings(Settings(life_safety_silence_max_hours=2, rate_login_per_min=7))
    assert cfg.life_safety_silence_max_s == 7200 and cfg.rate_login_per_min == 7
    assert dataclasses.replace(cfg, cookie_secure=True).cookie_secure
