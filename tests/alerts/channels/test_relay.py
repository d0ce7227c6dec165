"""The live feed across processes, on a real PostgreSQL: a page connected to one process gets the notification
another process sends (presence in the database, the message through LISTEN/NOTIFY); a recipient whose page is
open nowhere is no address on the live channel, so the route goes on at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from alerts.channels.base import NO_ADDRESS
from alerts.channels.live import WebSocketChannel
from alerts.channels.relay import LiveRelay, RelayedLiveChannel
from tests.alerts.channels.support import notification
from tests.helpers import wait_for
from whistle.store.db import Database


@pytest.fixture
async def api_process(db: Database) -> AsyncIterator[tuple[WebSocketChannel, LiveRelay]]:
    """The process the page is connected to: its hub and its relay, listening."""
    hub = WebSocketChannel()
    relay = LiveRelay(db, hub, heartbeat_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    yield hub, relay
    stop.set()
    await asyncio.wait_for(task, 10)


async def listening(db: Database) -> bool:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN whistle_live'")
        row = await cur.fetchone()
    return bool(row and row[0])


async def test_a_page_on_another_process_gets_the_notification(
    db: Database, api_process: tuple[WebSocketChannel, LiveRelay]
) -> None:
    hub, relay = api_process
    page = hub.subscribe("W-17")
    await relay.opened("W-17")
    await wait_for(lambda: listening(db), timeout=10)
    sender = RelayedLiveChannel(WebSocketChannel(), db)  # the alerts process: no page connected to it
    attempt = await sender.send(notification(id="n-relay", recipient=notification().recipient))
    assert attempt.ok and attempt.code == "relayed" and attempt.address == "relayed to 1 other process"
    async with asyncio.timeout(10):
        doc = json.loads(await page.get())
    assert (doc["type"], doc["id"], doc["recipient_id"]) == ("notification", "n-relay", "W-17")
    assert relay.relayed_in == 1 and sender.relayed_out == 1
    page.close()


async def test_nobody_connected_anywhere_is_no_address_and_a_closed_page_is_forgotten(
    db: Database, api_process: tuple[WebSocketChannel, LiveRelay]
) -> None:
    _, relay = api_process
    sender = RelayedLiveChannel(WebSocketChannel(), db)
    nobody = await sender.send(notification())
    assert not nobody.ok and nobody.code == NO_ADDRESS
    await relay.opened("W-17")
    await relay.opened("W-17")  # two tabs
    await relay.closed("W-17")
    assert (await sender.send(notification(id="n-2"))).ok  # one tab still open
    await relay.closed("W-17")
    assert (await sender.send(notification(id="n-3"))).code == NO_ADDRESS


async def test_a_page_in_the_sending_process_is_reached_directly(db: Database) -> None:
    hub = WebSocketChannel()
    page = hub.subscribe("W-17")
    attempt = await RelayedLiveChannel(hub, db).send(notification())
    assert attempt.ok and attempt.address == "1 live connections"
    page.close()
