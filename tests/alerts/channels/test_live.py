"""The live fan-out hub: targeting, bounded queues that drop the oldest, and closing."""

from __future__ import annotations

import asyncio
import json

from alerts.channels.base import NO_ADDRESS
from alerts.channels.live import Subscription, WebSocketChannel
from tests.alerts.channels.support import notification


async def drain(sub: Subscription, n: int) -> list[dict[str, object]]:
    out = []
    async with asyncio.timeout(2):
        for _ in range(n):
            out.append(json.loads(await sub.get()))
    return out


async def test_send_reaches_the_recipients_connections_and_the_operations_center() -> None:
    hub = WebSocketChannel()
    worker = hub.subscribe("W-17")
    other = hub.subscribe("W-99")
    center = hub.subscribe()
    attempt = await hub.send(notification())
    assert attempt.ok and attempt.address == "1 live connections"
    [doc] = await drain(worker, 1)
    assert doc["type"] == "notification" and doc["recipient_id"] == "W-17" and doc["title"].endswith("烟感报警")
    assert (await drain(center, 1))[0]["id"] == "n-1"
    assert len(other) == 0


async def test_send_without_a_connection_of_the_recipient_is_not_delivered() -> None:
    hub = WebSocketChannel()
    center = hub.subscribe()
    attempt = await hub.send(notification())
    assert not attempt.ok and not attempt.retryable and attempt.code == NO_ADDRESS
    assert len(center) == 1  # the screen still sees it


async def test_broadcasts_reach_everyone() -> None:
    hub = WebSocketChannel()
    subs = [hub.subscribe("W-17"), hub.subscribe()]
    hub.announce({"type": "alarm.open", "alarm_id": "a-1"})
    for sub in subs:
        assert (await drain(sub, 1))[0] == {"type": "alarm.open", "alarm_id": "a-1"}


async def test_a_slow_subscriber_loses_its_oldest_messages_and_counts_them() -> None:
    hub = WebSocketChannel(queue_size=3)
    slow = hub.subscribe()
    fast = hub.subscribe()
    for i in range(5):
        hub.publish({"n": i})
        assert (await drain(fast, 1))[0] == {"n": i}
    assert [m["n"] for m in await drain(slow, 3)] == [2, 3, 4]
    assert (slow.dropped, fast.dropped, hub.dropped) == (2, 0, 2)


async def test_a_waiting_consumer_is_woken_by_a_message_and_ends_when_the_hub_stops() -> None:
    hub = WebSocketChannel()
    received: list[str] = []
    got_one = asyncio.Event()
    sub = hub.subscribe()

    async def consume() -> None:
        async with sub:
            async for text in sub:
                received.append(text)
                got_one.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(2):
        await asyncio.sleep(0)  # let the consumer block on the empty queue
        hub.publish({"type": "ping"})
        await got_one.wait()
        await hub.stop()
        await task
    assert received == ['{"type":"ping"}']
    assert hub.subscribers == 0 and sub.closed
    await hub.stop()  # idempotent


async def test_closing_a_subscription_unsubscribes_it() -> None:
    async with WebSocketChannel() as hub:
        sub = hub.subscribe()
        sub.close()
        sub.close()
        assert hub.publish({"x": 1}) == 0 and hub.subscribers == 0
        assert sub.closed and len(sub) == 0
