from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from alerts.service import AlertService
from api.app import create_app
from api.deps import ApiContext
from rules.processor import RuleContext
from rules.smoke import SmokeIncident, smoke_fire
from tests.helpers import small_registry
from whistle.domain import Channel, DeadLetter, Detection, DeviceType, Reading
from whistle.store.db import Database
from whistle.store.writers import insert_dead_letters, upsert_device_state
from whistle.timeutil import format_ms, now_ms

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def detect(r: Reading, st: SmokeIncident) -> list[Detection]:
    return smoke_fire(r, st, RuleContext(clock=r.ts)) or []


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    ctx = ApiContext(db=db, alerts=AlertService(db), admin_token=TOKEN, roles=["api"])
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        c.ctx = ctx  # type: ignore[attr-defined]
        yield c


async def fire(client: httpx.AsyncClient, device: str, ts: int) -> str:
    r = Reading(
        device, DeviceType.SMOKE, Channel.EVENT, ts, ts, {"event": "alarm"}, None, None, "RJ-B0001", "RJ-G1-M01"
    )
    (d,) = detect(r, SmokeIncident())
    res = await client.ctx.alerts.apply(d)  # type: ignore[attr-defined]
    assert res.ticket_id is not None
    return res.ticket_id


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["database"] == "ok"


@pytest.mark.parametrize("path", ["/api/v1/alarms", "/api/v1/tickets", "/api/v1/dead-letters", "/api/v1/devices/X"])
async def test_everything_else_needs_the_token(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_registry_post_then_device_lookup(client: httpx.AsyncClient, db: Database) -> None:
    r = await client.post("/api/v1/registry", json=small_registry(), headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"streets": 1, "grids": 3, "buildings": 2, "households": 1, "devices": 5, "workers": 4}
    bad = await client.post(
        "/api/v1/registry", json={"devices": [{"id": "X", "type": "gas", "building_id": "B"}]}, headers=AUTH
    )
    assert bad.status_code == 422 and "devices.0.type" in bad.json()["detail"]
    dev = await client.get("/api/v1/devices/WM-000001", headers=AUTH)
    assert dev.json() == {
        "id": "WM-000001",
        "type": "water",
        "household_id": "RJ-H000001",
        "building_id": "RJ-B0001",
        "grid_id": "RJ-G1-M01",
        "location": None,
        "last_seen": None,
        "online": None,
        "battery_pct": None,
        "rssi_dbm": None,
        "gateway_id": None,
    }
    ts = now_ms()
    async with db.connection() as conn:
        await upsert_device_state(
            conn, [Reading("WM-000001", DeviceType.WATER, Channel.STATUS, ts, ts, {"battery_pct": 64.0})]
        )
    dev = (await client.get("/api/v1/devices/WM-000001", headers=AUTH)).json()
    assert dev["online"] is True and dev["battery_pct"] == 64.0 and dev["last_seen"].endswith("Z")
    assert (await client.get("/api/v1/devices/NOPE", headers=AUTH)).status_code == 404


async def test_alarms_and_tickets_list_filter_and_page(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/registry", json=small_registry(), headers=AUTH)
    ts = now_ms()
    ids = [await fire(client, f"SM-{i}", ts + i) for i in range(3)]
    # three detectors of one building in alarm: one incident, so one alarm (count 3) and one ticket
    assert len(set(ids)) == 1
    alarms = (await client.get("/api/v1/alarms", headers=AUTH)).json()
    assert alarms["next"] is None
    (a,) = alarms["items"]
    assert (a["kind"], a["severity"], a["status"], a["count"]) == ("smoke.fire", "critical", "active", 3)
    assert a["first_seen"].endswith("Z")
    tickets = (await client.get("/api/v1/tickets", params={"status": "dispatched"}, headers=AUTH)).json()
    (t,) = tickets["items"]
    assert t["alarm_ids"] == [a["id"]] and t["assignee_id"] == "W-09"
    assert (t["grid_name"], t["assignee_name"]) == ("微网格01", "赵某")  # the registry's names, for people to read
    assert t["history"][0]["action"] == "dispatched"
    assert (await client.get("/api/v1/tickets", params={"status": "resolved"}, headers=AUTH)).json()["items"] == []
    assert (await client.get("/api/v1/alarms", params={"kind": "elevator.trapped"}, headers=AUTH)).json() == {
        "items": [],
        "next": None,
    }
    assert (await client.get("/api/v1/alarms", params={"kind": "nonsense"}, headers=AUTH)).status_code == 422
    assert (await client.get("/api/v1/alarms", params={"cursor": "garbage"}, headers=AUTH)).status_code == 400


async def test_ticket_actions_over_http(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/registry", json=small_registry(), headers=AUTH)
    tid = await fire(client, "SM-0001", now_ms())
    r = await client.post(f"/api/v1/tickets/{tid}/ack", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    assert (await client.post(f"/api/v1/tickets/{tid}/ack", headers=AUTH)).status_code == 409
    r = await client.post(f"/api/v1/tickets/{tid}/arrive", json={"note": "到场"}, headers=AUTH)
    assert r.json()["status"] == "on_site"
    assert (
        await client.post(f"/api/v1/tickets/{tid}/resolve", json={"outcome": "maybe"}, headers=AUTH)
    ).status_code == 422
    r = await client.post(f"/api/v1/tickets/{tid}/resolve", json={"outcome": "confirmed", "note": "灭火"}, headers=AUTH)
    body = r.json()
    assert body["status"] == "resolved" and body["outcome"] == "confirmed"
    assert [h["action"] for h in body["history"]] == ["dispatched", "notify", "ack", "arrive", "resolve"]
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.post(f"/api/v1/tickets/{missing}/ack", headers=AUTH)).status_code == 404


async def test_dead_letters_page_newest_first(client: httpx.AsyncClient, db: Database) -> None:
    async with db.connection() as conn:
        await insert_dead_letters(
            conn,
            [
                DeadLetter("whistle/v1/smoke/A/event", "not_json", f"n{i}", b"{" if i % 2 else b"\xff", now_ms())
                for i in range(5)
            ],
        )
    first = (await client.get("/api/v1/dead-letters", params={"limit": 3}, headers=AUTH)).json()
    assert [d["detail"] for d in first["items"]] == ["n4", "n3", "n2"]
    assert first["items"][1]["payload"] == "{" and first["items"][1]["payload_encoding"] == "utf-8"
    assert first["items"][0]["payload_encoding"] == "base64"
    rest = (await client.get("/api/v1/dead-letters", params={"limit": 3, "cursor": first["next"]}, headers=AUTH)).json()
    assert [d["detail"] for d in rest["items"]] == ["n1", "n0"] and rest["next"] is None
    only = (await client.get("/api/v1/dead-letters", params={"reason": "oversized"}, headers=AUTH)).json()
    assert only["items"] == []


async def test_screen_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "数字吹哨" in r.text


async def test_unregistered_devices_and_usage(client: httpx.AsyncClient, db: Database) -> None:
    from whistle.store.writers import copy_readings, upsert_unregistered

    await client.post("/api/v1/registry", json=small_registry(), headers=AUTH)
    t = now_ms() - 3_600_000
    async with db.connection() as conn:
        await upsert_unregistered(conn, {"WM-NEW": ("water", "whistle/v1/water/WM-NEW/data", 3, t)})
        await upsert_unregistered(
            conn,
            {
                "WM-NEW": ("water", "whistle/v1/water/WM-NEW/data", 2, t + 1000),
                "WM-000001": ("water", "whistle/v1/water/WM-000001/data", 1, t),
            },
        )
        await copy_readings(
            conn,
            [
                Reading("WM-000001", DeviceType.WATER, Channel.DATA, t + i * 900_000, t, {"total_m3": v}, i)
                for i, v in enumerate([10.0, 10.05, 9.0])
            ],
        )
    listed = (await client.get("/api/v1/devices/unregistered", headers=AUTH)).json()
    # WM-000001 is registered now, so it is no longer listed
    assert [(d["device_id"], d["messages"], d["device_type"]) for d in listed] == [("WM-NEW", 5, "water")]
    since = format_ms(t - 1)
    usage = (await client.get("/api/v1/devices/WM-000001/usage", params={"since": since}, headers=AUTH)).json()
    assert [(u["delta"] is None, u["reset"], u["gap"]) for u in usage] == [
        (True, False, False),
        (False, False, False),
        (True, True, False),
    ]
    assert abs(usage[1]["delta"] - 0.05) < 1e-9 and usage[1]["interval_ms"] == 900_000
    naive = await client.get("/api/v1/devices/WM-000001/usage", params={"since": "2026-11-01T00:00:00"}, headers=AUTH)
    assert naive.status_code == 422


async def test_declared_absences_are_recorded_listed_and_reach_the_rules(
    client: httpx.AsyncClient, db: Database
) -> None:
    from datetime import datetime

    from rules.topology import load_topology
    from tests.helpers import small_registry as registry

    assert (await client.post("/api/v1/registry", json=registry(), headers=AUTH)).status_code == 200
    url = "/api/v1/households/RJ-H000001/absences"
    body = {"start": "2026-11-20T09:00:00+08:00", "end": "2026-11-27T18:00:00+08:00", "note": "visiting her son"}
    r = await client.post(url, json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["household_id"] == "RJ-H000001" and made["created_by"] and made["note"] == "visiting her son"
    listed = (await client.get(url, headers=AUTH)).json()
    assert [a["id"] for a in listed] == [made["id"]]
    bad = await client.post(url, json={**body, "end": "2026-11-19T09:00:00+08:00"}, headers=AUTH)
    assert bad.status_code == 422 and "end must be after start" in bad.text
    naive = await client.post(url, json={**body, "start": "2026-11-20T09:00:00"}, headers=AUTH)
    assert naive.status_code == 422
    missing = await client.post("/api/v1/households/RJ-H999999/absences", json=body, headers=AUTH)
    assert missing.status_code == 404
    assert (await client.post(url, json=body)).status_code == 401
    topo = await load_topology(db)
    start = int(datetime.fromisoformat(body["start"]).timestamp() * 1000)
    end = int(datetime.fromisoformat(body["end"]).timestamp() * 1000)
    assert topo.absent("RJ-H000001", start) == (start, end)
    assert topo.absent("RJ-H000001", start - 1) is None
    assert topo.absent("RJ-H000001", end) is None


async def test_a_cursor_or_ticket_id_this_api_did_not_issue_is_a_400_not_a_500(client: httpx.AsyncClient) -> None:
    import base64

    forged = base64.urlsafe_b64encode(b"2026-11-24T00:00:00+00:00|not-a-uuid").decode().rstrip("=")
    for path in ("/api/v1/alarms", "/api/v1/tickets"):
        r = await client.get(path, params={"cursor": forged}, headers=AUTH)
        assert r.status_code == 400, (path, r.status_code, r.text)
    dashes = "-" * 36  # matches the id's pattern, is no UUID
    assert (await client.get(f"/api/v1/tickets/{dashes}", headers=AUTH)).status_code == 400
    assert (await client.post(f"/api/v1/tickets/{dashes}/ack", headers=AUTH)).status_code == 400
