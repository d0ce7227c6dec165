"""The brokers the product starts itself, with authentication: a private Mosquitto (`start_mosquitto(auth_dir=)`)
and the embedded amqtt broker, which refuses anonymous clients outside the demo. And the defect of issue 15
end to end: a device's spoofed tamper event on another detector's topic never becomes an alarm."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.broker import EmbeddedBroker, free_port
from app.mosquitto import Broker, start_mosquitto
from app.runtime import ROLES, Runtime, run
from tests.conftest import _install_mosquitto
from tests.helpers import small_registry, wait_for
from tests.mqtt_clients import connect, refused
from whistle.broker_auth import live_accounts, provision, render, revoke
from whistle.mqtt import MqttEndpoint
from whistle.registry import import_registry, parse_registry
from whistle.settings import Settings
from whistle.store.db import Database
from whistle.timeutil import now_ms

REFUSED = "Not authorized"
TOKEN = "brokers-admin-token-5f4e3d2c1b"


@pytest.fixture
async def accounts(db: Database) -> dict[str, str]:
    await import_registry(db, parse_registry(small_registry()))
    return {c.username: c.password for c in await provision(db, actor="test")}


@pytest.fixture
async def private_mosquitto(db: Database, accounts: dict[str, str], tmp_path: Path) -> AsyncIterator[Broker]:
    auth = tmp_path / "auth"
    (await render(db)).write(auth)
    broker = await asyncio.to_thread(
        start_mosquitto, tmp_path / "mosquitto", auth_dir=auth, binary=_install_mosquitto(), log_subscribe=False
    )
    broker.auth_dir = auth  # type: ignore[attr-defined]
    yield broker
    broker.stop()


async def test_start_mosquitto_with_accounts_refuses_strangers_and_reloads(
    private_mosquitto: Broker, accounts: dict[str, str], db: Database
) -> None:
    b = private_mosquitto
    assert b.service_port is not None and b.service_port != b.port
    assert refused(b.port, client_id="anon") == REFUSED
    assert refused(b.service_port, client_id="anon") == REFUSED
    assert refused(b.service_port, client_id="x", username="SM-0001", password=accounts["SM-0001"]) == REFUSED
    col = MqttEndpoint.parse(b.service_url("whistle-collector", accounts["whistle-collector"]))
    lane = connect(b.service_port, client_id="c1", username=col.username, password=col.password, clean_session=False)
    lane.subscribe("whistle/v1/#")
    dev = connect(b.port, client_id="anything", username="SM-0001", password=accounts["SM-0001"])
    assert dev.rc == "Success"
    dev.publish("whistle/v1/smoke/SM-0002/event", b"{}")  # denied, and the device stays connected
    dev.publish("whistle/v1/smoke/SM-0001/event", b"{}")
    lane.wait_for("whistle/v1/smoke/SM-0001/event")
    assert [t for t, _ in lane.messages] == ["whistle/v1/smoke/SM-0001/event"] and dev.disconnects == []
    dev.close()
    await revoke(db, ["SM-0001"], actor="test")
    (await render(db)).write(b.auth_dir)  # type: ignore[attr-defined]
    b.reload()
    deadline = time.monotonic() + 15
    while refused(b.port, client_id="SM-0001", username="SM-0001", password=accounts["SM-0001"]) != REFUSED:
        assert time.monotonic() < deadline, "a revoked account still connects after the reload"
        await asyncio.sleep(0.2)
    lane.close()


@pytest.fixture
async def pipeline(
    private_mosquitto: Broker, accounts: dict[str, str], db_url: str, db: Database, tmp_path: Path
) -> AsyncIterator[Runtime]:
    """Every role in this process, the collector on the private Mosquitto's collectors' listener."""
    settings = Settings(
        broker_auth_dir=private_mosquitto.auth_dir,  # type: ignore[attr-defined]
        mqtt_url=private_mosquitto.service_url("whistle-collector", accounts["whistle-collector"]),
        database_url=db_url,
        http=f"127.0.0.1:{free_port()}",
        admin_token=TOKEN,
        state_dir=tmp_path,
        mqtt_client_id=f"auth-{uuid.uuid4().hex[:8]}",
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()

    async def on_ready(rt: Runtime) -> None:
        ready.set_result(rt)

    task = asyncio.create_task(run(settings, ROLES, stop, on_ready=on_ready))
    done, _ = await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready.done(), "the runtime did not start within 30 s"
    yield ready.result()
    stop.set()
    await asyncio.wait_for(task, 15)


async def test_a_spoofed_tamper_event_never_becomes_an_alarm(
    pipeline: Runtime, private_mosquitto: Broker, accounts: dict[str, str]
) -> None:
    """Issue 15: `smoke/SM-0002/event tamper` published by another device became an alarm. Now the broker drops
    it; the same device's own tamper event becomes SM-0001's alarm."""
    dev = connect(private_mosquitto.port, client_id="SM-0001", username="SM-0001", password=accounts["SM-0001"])
    body = f'{{"ts": {now_ms()}, "seq": 1, "event": "tamper"}}'.encode()
    dev.publish("whistle/v1/smoke/SM-0002/event", body)
    dev.publish("whistle/v1/smoke/SM-0001/event", body)
    dev.close()
    async with httpx.AsyncClient(
        base_url=pipeline.http_url or "", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ) as http:

        async def alarms() -> list[dict[str, object]]:
            items: list[dict[str, object]] = (await http.get("/api/v1/alarms")).json()["items"]
            return items if any(a["subject_id"] == "SM-0001" for a in items) else []

        found = await wait_for(alarms, timeout=20)
    assert [(a["kind"], a["subject_id"]) for a in found] == [("smoke.tamper", "SM-0001")], found


async def test_the_embedded_broker_refuses_anonymous_clients_outside_the_demo(
    db: Database, accounts: dict[str, str]
) -> None:
    broker = EmbeddedBroker(port=free_port(), open_broker=False, accounts=lambda: live_accounts(db))
    await broker.start()
    off = asyncio.to_thread  # the broker runs on this loop: the blocking clients run beside it
    port = broker.port
    try:
        assert await off(refused, port, client_id="anon") == REFUSED
        assert await off(refused, port, client_id="SM-0001", username="SM-0001", password="wrong") == REFUSED
        # client ids are bound to usernames: a device may not connect as the collector
        intruder = {"client_id": "whistle-collector", "username": "SM-0001", "password": accounts["SM-0001"]}
        assert await off(refused, port, **intruder) == REFUSED
        col = MqttEndpoint.parse(broker.url)
        assert col.username and col.password and col.password not in broker.public_url
        lane = await off(connect, port, client_id="collector", username=col.username, password=col.password)
        assert lane.rc == "Success"
        await off(lane.subscribe, "whistle/v1/#")
        dev = await off(connect, port, client_id="SM-0001", username="SM-0001", password=accounts["SM-0001"])
        assert dev.rc == "Success"
        await off(dev.client.publish, "whistle/v1/smoke/SM-0002/event", b"{}", 1)
        await off(dev.publish, "whistle/v1/smoke/SM-0001/event", b"{}")
        await off(lane.wait_for, "whistle/v1/smoke/SM-0001/event")
        assert [t for t, _ in lane.messages] == ["whistle/v1/smoke/SM-0001/event"]
        await off(dev.close)
        await off(lane.close)
    finally:
        await broker.stop()
    demo = EmbeddedBroker(port=free_port(), open_broker=True)
    await demo.start()
    try:
        anon = await off(connect, demo.port, client_id="anon")
        assert anon.rc == "Success", "the demo's (open) broker accepts anonymous clients"
        await off(anon.close)
    finally:
        await demo.stop()


async def test_the_service_rewrites_the_broker_files_when_a_device_is_retired(
    pipeline: Runtime, private_mosquitto: Broker, accounts: dict[str, str]
) -> None:
    """POST /devices/{id}/retire through the running service: its password file and ACL are rewritten (in
    WHISTLE_BROKER_AUTH_DIR) without the device, and once Mosquitto reloads them the device is refused."""
    b = private_mosquitto
    auth: Path = b.auth_dir  # type: ignore[attr-defined]
    assert "SM-0002:" in (auth / "passwd").read_text()
    async with httpx.AsyncClient(
        base_url=pipeline.http_url or "", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ) as http:
        r = await http.post("/api/v1/devices/SM-0002/retire", json={"reason": "拆除"})
        assert r.status_code == 200, r.text
    assert "SM-0002:" not in (auth / "passwd").read_text() and "SM-0002/" not in (auth / "acl").read_text()
    assert "SM-0001:" in (auth / "passwd").read_text()
    b.reload()  # what deploy/whistle-broker-auth.path does for a system Mosquitto
    deadline = time.monotonic() + 15
    while True:
        answer = await asyncio.to_thread(
            refused, b.port, client_id="SM-0002", username="SM-0002", password=accounts["SM-0002"]
        )
        if answer == REFUSED:
            break
        assert time.monotonic() < deadline, f"the retired device still connects: {answer}"
        await asyncio.sleep(0.2)
