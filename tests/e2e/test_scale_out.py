"""Scale-out over Kafka: every role in its own process, collectors sharing a subscription.

`whistle run collector` (twice, on one MQTT shared subscription), `whistle run rules`,
`whistle run alerts` and `whistle run api` are started as separate processes against a real
Mosquitto, Kafka and PostgreSQL. A smoke alarm becomes a ticket; the rules process is then
killed with SIGKILL and started again, and a second detector of the same building still
confirms the same alarm, because the restarted worker restored its state from the snapshot. The
worker's page is connected to the api process while the alerts process sends: the notification reaches it
through the live relay (alerts/channels/relay.py), and its receipt is the ticket's `seen`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import websockets

from app.broker import free_port
from evaluation.frontdoor.processes import mqtt_subscriptions
from simulators.live import Publisher
from tests.conftest import MosquittoBroker
from tests.helpers import small_registry, wait_for
from whistle.mqtt import MqttEndpoint
from whistle.timeutil import now_ms

T = TypeVar("T")
TOKEN = "scale-out-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXE = Path(sys.executable).with_name("whistle")


@pytest.fixture
async def cluster(mosquitto: MosquittoBroker, kafka: str, db_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    base.update(
        WHISTLE_MQTT_URL=mosquitto.url,
        WHISTLE_DATABASE_URL=db_url,
        WHISTLE_KAFKA_BOOTSTRAP=kafka,
        WHISTLE_ADMIN_TOKEN=TOKEN,
        WHISTLE_STATE_DIR=str(tmp_path),
        WHISTLE_HTTP=f"127.0.0.1:{port}",
        WHISTLE_PARTITIONS="4",
    )
    procs: dict[str, asyncio.subprocess.Process] = {}
    logs: dict[str, Path] = {}

    async def spawn(name: str, role: str, **extra: str) -> asyncio.subprocess.Process:
        log = tmp_path / f"{name}.log"
        logs[name] = log
        env = {**base, **extra}
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(str(EXE), "run", role, env=env, stdout=out, stderr=out)
        procs[name] = proc
        return proc

    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps(small_registry()))
    imp = await asyncio.create_subprocess_exec(str(EXE), "registry", "import", str(reg), env=base)
    assert await imp.wait() == 0
    share = f"collectors-{uuid.uuid4().hex[:6]}"
    for i in (1, 2):
        await spawn(
            f"collector{i}",
            "collector",
            WHISTLE_MQTT_SHARE_GROUP=share,
            WHISTLE_MQTT_CLIENT_ID=f"collector-{i}-{share}",
        )
    await spawn("rules", "rules")
    await spawn("alerts", "alerts")
    await spawn("api", "api")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=5) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/api/v1/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, timeout=60, interval=0.2)

            async def collectors_subscribed() -> bool:
                # A QoS 1 message published before a collector's session exists is not kept for it.
                return all(mqtt_subscriptions(logs[f"collector{i}"].read_text()) >= 2 for i in (1, 2))

            await wait_for(collectors_subscribed, timeout=60, interval=0.2)
            yield {"http": http, "spawn": spawn, "procs": procs, "logs": logs, "db_url": db_url}
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                code = await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                pytest.fail(f"{name} did not stop on SIGTERM:\n{logs[name].read_text()[-3000:]}")
            if code not in (0, -signal.SIGKILL):
                pytest.fail(f"{name} exited {code}:\n{logs[name].read_text()[-3000:]}")


async def test_roles_in_separate_processes_and_a_killed_rules_worker_restores_its_state(
    cluster: dict[str, Any], mosquitto: MosquittoBroker
) -> None:
    http: httpx.AsyncClient = cluster["http"]
    # W-09's page, connected to the api process; the alerts process sends: the live feed crosses processes
    w09 = (await http.post("/api/v1/users/W-09/tokens")).json()["token"]
    live = str(http.base_url).replace("http", "ws").rstrip("/") + f"/api/v1/live?token={w09}&recipient_id=W-09"
    page = await websockets.connect(live)
    assert json.loads(await asyncio.wait_for(page.recv(), 10))["type"] == "hello"
    pub = Publisher(MqttEndpoint.parse(mosquitto.url), f"scale-device-{uuid.uuid4().hex[:8]}")
    await pub.start()
    try:
        pub.publish("whistle/v1/smoke/SM-0001/event", {"ts": now_ms(), "seq": 1, "event": "alarm"})

        async def tickets() -> list[dict[str, Any]]:
            return (await http.get("/api/v1/tickets")).json()["items"]  # type: ignore[no-any-return]

        (t,) = await with_logs(cluster, wait_for(tickets, timeout=60, interval=0.2))
        assert (t["kind"], t["assignee_id"]) == ("smoke.fire", "W-09")
        async with asyncio.timeout(30):
            while (note := json.loads(await page.recv()))["type"] != "notification":
                pass
        assert note["ticket_id"] == t["id"] and note["recipient_id"] == "W-09"
        await page.send(json.dumps({"type": "receipt", "ids": [note["id"]]}))  # confirmed to the api process

        async def seen() -> bool:
            history = (await http.get(f"/api/v1/tickets/{t['id']}")).json()["history"]
            return any(e["action"] == "seen" and e["actor"] == "W-09" for e in history)

        await with_logs(cluster, wait_for(seen, timeout=30, interval=0.2))

        async def snapshotted() -> bool:  # the rules worker wrote its state (every 5 s)
            import psycopg

            async with await psycopg.AsyncConnection.connect(cluster["db_url"]) as conn:
                cur = await conn.execute("SELECT count(*) FROM rule_snapshots WHERE topic = 'whistle.priority'")
                row = await cur.fetchone()
                return bool(row and row[0] > 0)

        await wait_for(snapshotted, timeout=30, interval=0.5)
        rules = cluster["procs"]["rules"]
        rules.send_signal(signal.SIGKILL)
        await rules.wait()
        await cluster["spawn"]("rules2", "rules")

        pub.publish("whistle/v1/smoke/SM-0002/event", {"ts": now_ms(), "seq": 1, "event": "alarm"})

        async def confirmed() -> dict[str, Any] | None:
            items = (await http.get("/api/v1/alarms")).json()["items"]
            return items[0] if items and items[0]["count"] == 2 else None

        alarm = await with_logs(cluster, wait_for(confirmed, timeout=60, interval=0.2))
        # the restarted worker remembered the first detector: one incident, two detectors, confirmed
        assert alarm["evidence"]["detectors"] == ["SM-0001", "SM-0002"]
        assert alarm["evidence"]["confirmed"] is True
        assert len(await tickets()) == 1
    finally:
        await pub.stop()
        await page.close()


async def with_logs(cluster: dict[str, Any], waiting: Awaitable[T]) -> T:
    """Await; if it fails, fail with the tail of every process's log, which says why."""
    try:
        return await waiting
    except AssertionError as exc:
        tails = "\n".join(f"--- {name}\n{path.read_text()[-2500:]}" for name, path in cluster["logs"].items())
        raise AssertionError(f"{exc}\n{tails}") from None
