"""End to end: a smoke alarm over MQTT becomes a ticket for the right grid worker, seen over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.broker import free_port
from app.runtime import ROLES, Runtime, run
from simulators.live import Publisher
from tests.browser import chromium, until
from tests.conftest import MosquittoBroker
from tests.helpers import small_registry, wait_for
from whistle.mqtt import MqttEndpoint
from whistle.settings import Settings
from whistle.timeutil import now_ms

TOKEN = "e2e-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def server(mosquitto: MosquittoBroker, db_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        mqtt_url=mosquitto.url,
        database_url=db_url,
        http=f"127.0.0.1:{free_port()}",
        admin_token=TOKEN,
        state_dir=tmp_path,
        mqtt_client_id=f"e2e-{uuid.uuid4().hex[:8]}",
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()

    async def on_ready(rt: Runtime) -> None:
        ready.set_result(rt)

    task = asyncio.create_task(run(settings, ROLES, stop, on_ready=on_ready))
    done, _ = await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # startup failed: raise its error
    assert ready.done(), "the runtime did not start within 30 s"
    yield ready.result()
    stop.set()
    await asyncio.wait_for(task, 15)


async def test_smoke_alarm_over_mqtt_becomes_a_ticket_over_http(server: Runtime, mosquitto: MosquittoBroker) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, headers=AUTH, timeout=5) as http:
        r = await http.post("/api/v1/registry", json=small_registry())
        assert r.status_code == 200, r.text
        pub = Publisher(MqttEndpoint.parse(mosquitto.url), f"e2e-device-{uuid.uuid4().hex[:8]}")
        await pub.start()
        try:
            pub.publish("whistle/v1/smoke/SM-0002/event", b"\xffgarbage")
            pub.publish("whistle/v1/smoke/SM-0002/event", {"ts": now_ms(), "seq": 41, "event": "alarm"})

            async def ticket() -> list[dict[str, object]]:
                return (await http.get("/api/v1/tickets")).json()["items"]  # type: ignore[no-any-return]

            (t,) = await wait_for(ticket, timeout=20)
            assert (t["kind"], t["severity"], t["status"], t["grid_id"], t["assignee_id"]) == (
                "smoke.fire",
                "critical",
                "dispatched",
                "RJ-G1-M01",
                "W-09",
            )
            (a,) = (await http.get("/api/v1/alarms")).json()["items"]
            assert a["subject_id"] == "RJ-B0001" and a["evidence"]["detectors"] == ["SM-0002"]
            assert t["alarm_ids"] == [a["id"]]

            dead = (await http.get("/api/v1/dead-letters")).json()["items"]
            assert [(d["reason"], d["topic"]) for d in dead] == [("not_utf8", "whistle/v1/smoke/SM-0002/event")]

            # the collector kept running: a second detector reinforces the same alarm and ticket
            pub.publish("whistle/v1/smoke/SM-0001/event", {"ts": now_ms(), "seq": 7, "event": "alarm"})

            async def confirmed() -> bool:
                items = (await http.get("/api/v1/alarms")).json()["items"]
                return bool(items) and items[0]["count"] == 2

            await wait_for(confirmed, timeout=20)
            assert len(await ticket()) == 1

            async def metrics() -> str:
                text = (await http.get("/metrics", headers={})).text
                return text if "whistle_alerts_detections_applied_total 2" in text else ""

            text = await wait_for(metrics, timeout=10)
            assert 'whistle_dead_letters_total{reason="not_utf8"} 1' in text
            assert 'whistle_dead_letters_total{reason="not_json"} 0' in text
            assert "whistle_collector_readings_total 2" in text
            health = (await http.get("/api/v1/health")).json()
            assert health["status"] == "ok" and health["details"]["collector"]["mqtt_connected"] is True
        finally:
            await pub.stop()


SEEN = """
const text = id => document.getElementById(id).textContent;
return {
  updated: document.body.getAttribute('data-updated'), conn: text('connlabel'),
  auth: document.getElementById('auth').classList.contains('show'), open: text('k-open'),
  ticker: text('ticker'),
  buildings: String(echarts.getInstanceByDom(document.getElementById('map')).getOption().series
    .filter(s => ['buildings', 'alarmed', 'critical'].includes(s.id)).reduce((n, s) => n + s.data.length, 0)),
};
"""


def screen_during_demo(url: str) -> dict[str, str]:
    with chromium(1920, 1080) as d:
        d.get(url)
        return until(
            lambda: (p := d.execute_script(SEEN))["updated"] and p["conn"] == "实时" and "火警" in p["ticker"] and p,
            timeout=45,
            what="the demo's screen with a fire",
        )


async def test_whistle_demo_shows_a_ticket_with_the_printed_token(tmp_path: Path) -> None:
    """`whistle demo` on embedded defaults (amqtt, embedded PostgreSQL, in-process bus)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env.update(WHISTLE_HTTP=f"127.0.0.1:{port}", WHISTLE_STATE_DIR=str(tmp_path / "state"))
    exe = Path(sys.executable).with_name("whistle")
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "demo",
        "--duration",
        "90",
        "--incident-every",
        "3",
        "--households",
        "24",
        "--history-days",
        "0",  # live from the start (tests/e2e/test_demo.py runs the history)
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        token = None
        async with asyncio.timeout(60):
            while token is None:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    break
                lines.append(line)
                if "#token=" in line:
                    token = line.strip().rsplit("#token=", 1)[1]
        assert token, "demo printed no token:\n" + "".join(lines)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=5, headers={"Authorization": f"Bearer {token}"}
        ) as http:

            async def tickets() -> list[dict[str, object]]:
                return (await http.get("/api/v1/tickets")).json()["items"]  # type: ignore[no-any-return]

            items = await wait_for(tickets, timeout=45, interval=0.5)
            assert items[0]["kind"] == "smoke.fire" and items[0]["assignee_id"]
            screen = await http.get("/")
            assert screen.status_code == 200 and "城运中心" in screen.text
            # The operations-center screen as a browser shows it (Selenium, Debian's headless Chromium): its
            # script signed in with the printed token, opened the live socket, and drew the fire's ticket.
            seen = await asyncio.to_thread(screen_during_demo, f"http://127.0.0.1:{port}/#token={token}")
            assert seen["conn"] == "实时" and not seen["auth"], seen
            assert int(seen["open"]) >= 1 and "火警" in seen["ticker"], seen
            doc = (await http.get("/api/v1/map")).json()
            registered = [f for f in doc["features"] if f["properties"]["kind"] == "building"]
            assert int(seen["buildings"]) == len(registered) > 0, seen  # every building of the demo's street is drawn
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = (await proc.stdout.read()).decode()
            code = await proc.wait()
        assert code == 0, "".join(lines) + rest
        assert "tickets by status: dispatched=" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
