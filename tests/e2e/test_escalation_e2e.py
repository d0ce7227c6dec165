"""End to end: a trapped passenger over MQTT → ticket → not acknowledged → escalated on time → ack → quiet.

The whole pipeline runs for real (Mosquitto, collector, rules, alerts, outbox, escalation worker);
only the alerts' clock is shifted forward by the test instead of waiting minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.runtime import Runtime
from simulators.live import Publisher
from tests.conftest import MosquittoBroker
from tests.e2e.test_e2e import AUTH, server  # noqa: F401 - the running pipeline fixture
from tests.helpers import small_registry, wait_for
from whistle.mqtt import MqttEndpoint
from whistle.store.db import Database
from whistle.timeutil import now_ms


def registry() -> dict[str, Any]:
    doc = small_registry()
    doc["workers"] += [
        {"id": "W-M02", "name": "周某", "phone": "+8613900000011", "grid_id": "RJ-G1-M02", "role": "grid_worker"},
        {"id": "W-M02B", "name": "吴某", "phone": "+8613900000012", "grid_id": "RJ-G1-M02", "role": "grid_worker"},
        {
            "id": "W-LIFT",
            "name": "电梯维保",
            "phone": "+8613900000013",
            "grid_id": "RJ-G1",
            "role": "elevator_maintainer",
        },
    ]
    return doc


class Shift:
    """now_ms() plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return now_ms() + self.offset


@pytest.fixture
async def shifted(server: Runtime) -> AsyncIterator[Shift]:  # noqa: F811
    clock = Shift()
    assert server.alerts is not None and server.escalation is not None
    server.alerts.clock = clock
    server.escalation.clock = clock
    yield clock


async def notified(db: Database) -> list[tuple[int, str]]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT step, recipient_id FROM notifications ORDER BY step, recipient_id")
        return [(int(s), str(r)) for s, r in await cur.fetchall()]


async def test_trapped_passenger_escalates_on_time_and_stops_at_the_ack(
    server: Runtime,  # noqa: F811
    shifted: Shift,
    mosquitto: MosquittoBroker,
) -> None:
    db = server.db
    async with httpx.AsyncClient(base_url=server.http_url, headers=AUTH, timeout=5) as http:
        assert (await http.post("/api/v1/registry", json=registry())).status_code == 200
        pub = Publisher(MqttEndpoint.parse(mosquitto.url), f"e2e-lift-{uuid.uuid4().hex[:8]}")
        await pub.start()
        try:
            pub.publish("whistle/v1/elevator/EL-0002/event", {"ts": now_ms(), "seq": 1, "event": "trapped", "floor": 7})

            async def ticket() -> dict[str, Any] | None:
                items = (await http.get("/api/v1/tickets")).json()["items"]
                return items[0] if items else None

            t = await wait_for(ticket, timeout=20)
            assert (t["kind"], t["severity"], t["grid_id"]) == ("elevator.trapped", "critical", "RJ-G1-M02")
            assert t["assignee_id"] in ("W-M02", "W-M02B")

            async def first_step() -> list[tuple[int, str]]:
                got = await notified(db)
                return got if {r for _, r in got} >= {t["assignee_id"], "W-LIFT"} else []

            first = await wait_for(first_step, timeout=10)
            assert {s for s, _ in first} == {0}  # the assignee and the building's elevator maintainer, at once

            # 2 minutes later: still inside the 3-minute acknowledgement window, nothing more
            shifted.offset = 2 * 60_000
            await server.escalation.run_once()  # type: ignore[union-attr]
            assert await notified(db) == first

            # past 3 minutes without an ack: the backup and the grid leader
            shifted.offset = 3 * 60_000 + 5_000

            async def escalated() -> list[tuple[int, str]]:
                got = await notified(db)
                return got if len(got) > len(first) else []

            after = await wait_for(escalated, timeout=10)
            second = {r for s, r in after if s > 0}
            backup = ({"W-M02", "W-M02B"} - {t["assignee_id"]}).pop()
            assert backup in second and "W-LEAD" in second
            level = (await http.get(f"/api/v1/tickets/{t['id']}")).json()["escalation_level"]
            assert level >= 1

            r = await http.post(f"/api/v1/tickets/{t['id']}/ack", json={"note": "on my way"})
            assert r.status_code == 200 and r.json()["status"] == "acknowledged"
            # ten more minutes pass, before the on-site deadline: nothing more is sent
            for minutes in (5, 10, 13):
                shifted.offset = minutes * 60_000
                await server.escalation.run_once()  # type: ignore[union-attr]
            assert await notified(db) == after
        finally:
            await pub.stop()
