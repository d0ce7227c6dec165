"""Ticket actions beyond ack/arrive/resolve, rosters, silences and the live WebSocket, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
import websockets

from alerts.service import AlertService
from api.app import create_app
from api.deps import ApiContext
from app.broker import free_port
from tests.helpers import small_registry
from whistle.domain import AlarmKind, Detection, Severity, SubjectType
from whistle.store.db import Database
from whistle.timeutil import now_ms

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    ctx = ApiContext(db=db, alerts=AlertService(db), admin_token=TOKEN, roles=["api"])
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=AUTH) as c:
        c.ctx = ctx  # type: ignore[attr-defined]
        assert (await c.post("/api/v1/registry", json=small_registry())).status_code == 200
        yield c


def fire(ts: int, building: str = "RJ-B0001", grid: str = "RJ-G1-M01") -> Detection:
    return Detection(
        AlarmKind.SMOKE_FIRE,
        Severity.CRITICAL,
        SubjectType.BUILDING,
        building,
        ts,
        evidence={"detectors": ["SM-0001"]},
        building_id=building,
        grid_id=grid,
        source_id=f"SM-0001:{ts}",
    )


async def open_ticket(client: httpx.AsyncClient, building: str = "RJ-B0001", grid: str = "RJ-G1-M01") -> str:
    res = await client.ctx.alerts.apply(fire(now_ms(), building, grid))  # type: ignore[attr-defined]
    assert res.ticket_id is not None
    return res.ticket_id


async def test_reassign_transfer_comment_close_over_http(client: httpx.AsyncClient) -> None:
    tid = await open_ticket(client)
    url = f"/api/v1/tickets/{tid}"
    r = await client.post(f"{url}/reassign", json={"assignee_id": "W-17", "note": "W-09 off sick"})
    assert r.status_code == 200, r.text
    assert (r.json()["assignee_id"], r.json()["status"]) == ("W-17", "dispatched")
    assert (await client.post(f"{url}/reassign", json={"assignee_id": "W-NOBODY"})).status_code == 422
    assert (await client.post(f"{url}/reassign", json={"assignee_id": "W-17"})).status_code == 409
    r = await client.post(f"{url}/transfer", json={"grid_id": "RJ-G1-M02", "note": "next door"})
    assert (r.json()["grid_id"], r.json()["assignee_id"]) == ("RJ-G1-M02", "W-LEAD")
    assert (await client.post(f"{url}/transfer", json={"grid_id": "NOPE"})).status_code == 422
    r = await client.post(f"{url}/comments", json={"note": "called the property office"})
    assert r.status_code == 201
    assert (await client.post(f"{url}/comments", json={"note": ""})).status_code == 422
    assert (await client.post(f"{url}/close")).status_code == 409  # not resolved yet
    await client.post(f"{url}/resolve", json={"outcome": "confirmed"})
    r = await client.post(f"{url}/close", json={"note": "report filed"})
    body = r.json()
    assert body["status"] == "closed" and body["closed_at"] is not None and body["escalation_due_at"] is None
    actions = [h["action"] for h in body["history"]]
    assert actions == [
        "dispatched",
        "notify",
        "reassign",
        "notify",
        "transfer",
        "notify",
        "comment",
        "resolve",
        "close",
    ]
    reassigned = body["history"][2]
    assert (reassigned["actor"], reassigned["note"], reassigned["data"]["from_assignee"]) == (
        "admin",
        "W-09 off sick",
        "W-09",
    )
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.post(f"/api/v1/tickets/{missing}/comments", json={"note": "x"})).status_code == 404


async def test_roster_put_get_and_routing_uses_it(client: httpx.AsyncClient) -> None:
    every_day = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "00:00"}
    r = await client.put(
        "/api/v1/grids/RJ-G1-M01/roster",
        json={"shifts": [{"worker_id": "W-17", **every_day}, {"worker_id": "W-LEAD", "duty": "backup", **every_day}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["shifts"]) == 14 and body["on_duty"] == ["W-17"] and body["backup_on_duty"] == ["W-LEAD"]
    assert (await client.get("/api/v1/grids/RJ-G1-M01/roster")).json() == body
    tid = await open_ticket(client)
    assert (await client.get(f"/api/v1/tickets/{tid}")).json()["assignee_id"] == "W-17"
    bad = await client.put("/api/v1/grids/RJ-G1-M01/roster", json={"shifts": [{"worker_id": "X", **every_day}]})
    assert bad.status_code == 422
    bad_day = {**every_day, "weekdays": [8]}
    assert (
        await client.put("/api/v1/grids/RJ-G1-M01/roster", json={"shifts": [{"worker_id": "W-17", **bad_day}]})
    ).status_code == 422
    assert (await client.get("/api/v1/grids/NOPE/roster")).status_code == 404


async def test_silences_are_created_listed_ended_and_hold_dispatch(client: httpx.AsyncClient) -> None:
    forever = {"start": "2020-01-01T00:00:00+08:00", "end": "2099-01-01T00:00:00+08:00"}
    r = await client.post(
        "/api/v1/silences", json={"scope_type": "building", "scope_id": "RJ-B0001", "reason": "drill", **forever}
    )
    assert r.status_code == 422, r.text  # every kind, fire included, for 79 years: refused (issue 15)
    now = datetime.now(UTC)
    window = {"start": (now - timedelta(minutes=1)).isoformat(), "end": (now + timedelta(hours=2)).isoformat()}
    r = await client.post(
        "/api/v1/silences",
        json={"scope_type": "building", "scope_id": "RJ-B0001", "reason": "drill", "life_safety": True, **window},
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["created_by"] == "admin" and r.json()["kinds"] is None and r.json()["life_safety"] is True
    res = await client.ctx.alerts.apply(fire(now_ms()))  # type: ignore[attr-defined]
    assert res.silenced and res.ticket_id is None
    assert [s["id"] for s in (await client.get("/api/v1/silences")).json()] == [sid]
    assert (await client.delete(f"/api/v1/silences/{sid}")).status_code == 204
    assert (await client.get("/api/v1/silences")).json() == []
    assert len((await client.get("/api/v1/silences", params={"active": "false"})).json()) == 1
    assert (await client.delete("/api/v1/silences/999999")).status_code == 404
    missing = {"scope_type": "device", "scope_id": "NOPE", "life_safety": True, "reason": "drill", **window}
    assert (await client.post("/api/v1/silences", json=missing)).status_code == 404
    backwards = {"scope_type": "grid", "scope_id": "RJ-G1", "start": window["end"], "end": window["start"]}
    assert (await client.post("/api/v1/silences", json=backwards)).status_code == 422


@contextlib.asynccontextmanager
async def serve(ctx: ApiContext) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/api/v1/live"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_live_websocket_streams_alarm_and_ticket_changes(db: Database) -> None:
    ctx = ApiContext(db=db, alerts=AlertService(db), admin_token=TOKEN, roles=["api"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://t") as c:
        await c.post("/api/v1/registry", json=small_registry(), headers=AUTH)
        w09 = (await c.post("/api/v1/users/W-09/tokens", headers=AUTH)).json()["token"]
    async with serve(ctx) as url:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"{url}?token=wrong"):
                pass
        async with websockets.connect(url, additional_headers=AUTH) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "hello", "recipient_id": None}
            res = await ctx.alerts.apply(fire(now_ms()))
            assert res.ticket_id is not None
            await ctx.alerts.transition(res.ticket_id, "ack", actor="W-09")
            got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(3)]
            assert [m["type"] for m in got] == ["alarm.open", "ticket.created", "ticket.acknowledged"]
            assert got[1]["ticket_id"] == res.ticket_id and got[1]["assignee_id"] == "W-09"
        async with websockets.connect(f"{url}?token={w09}&recipient_id=W-09") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["recipient_id"] == "W-09"
        # a live connection may claim only its own user as recipient, the admin's included
        for token in (TOKEN, w09):
            with pytest.raises(websockets.exceptions.InvalidStatus):
                async with websockets.connect(f"{url}?token={token}&recipient_id=W-17"):
                    pass
        async with asyncio.timeout(5):
            while ctx.alerts.live.subscribers:  # noqa: ASYNC110 - closed connections unsubscribe
                await asyncio.sleep(0.01)
