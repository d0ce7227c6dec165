"""Delivered means seen, measured through the front door: how long a fire takes to reach a worker's page, how soon
after the receipt deadline it reaches the phone by SMS when the page never confirms, and how fast a confirmed one
is marked seen.

`whistle serve` runs as its own process on a private Mosquitto and an embedded PostgreSQL, with SMS through a
loopback Alibaba Cloud (tests/alerts/channels/fakes.py, which checks the signature); the registry is posted over
HTTP; each round publishes a smoke alarm over MQTT in its own building. Half the rounds the worker's live
connection never confirms (a tab nobody looks at), the other half it confirms each notification at once.

    .venv/bin/python scripts/bench_receipts.py --rounds 10 --timeout 5 --json-out docs/bench_receipts.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import websockets

from app.broker import free_port
from app.mosquitto import start_mosquitto
from evaluation.frontdoor.processes import mqtt_subscriptions
from simulators.live import Publisher
from tests.alerts.channels.fakes import ALI_ID, ALI_SECRET, aliyun_fake
from tests.alerts.channels.http_server import LocalHttpServer
from whistle.mqtt import MqttEndpoint
from whistle.timeutil import now_ms

TOKEN = "bench-receipts-admin-token-0123456789"  # noqa: S105 - a throwaway process's token
PHONE = "+8613900000017"


def registry(n: int) -> dict[str, Any]:
    buildings = [
        {
            "id": f"B-{i:02d}",
            "grid_id": "G-M1",
            "address": f"瑞金二路 {i} 号",
            "location": [121.466, 31.213],
            "floors": 6,
        }
        for i in range(n)
    ]
    return {
        "streets": [{"id": "RJ", "name": "瑞金二路街道"}],
        "grids": [{"id": "G-M1", "street_id": "RJ", "parent_id": None, "name": "微网格01"}],
        "buildings": buildings,
        "devices": [{"id": f"SM-{i:02d}", "type": "smoke", "building_id": f"B-{i:02d}"} for i in range(n)],
        "workers": [{"id": "W-17", "name": "李某", "phone": PHONE, "grid_id": "G-M1", "role": "grid_worker"}],
    }


async def bench(rounds: int, timeout_s: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="whistle-bench-receipts-"))
    broker = start_mosquitto(work / "mosquitto", log_subscribe=False)
    sms = await LocalHttpServer(aliyun_fake()).start()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env.update(
        WHISTLE_MQTT_URL=broker.url,
        WHISTLE_HTTP=f"127.0.0.1:{port}",
        WHISTLE_ADMIN_TOKEN=TOKEN,
        WHISTLE_STATE_DIR=str(work / "state"),
        WHISTLE_SMS_ALIYUN_ACCESS_KEY_ID=ALI_ID,
        WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET=ALI_SECRET,
        WHISTLE_SMS_ALIYUN_SIGN_NAME="数字吹哨",
        WHISTLE_SMS_ALIYUN_TEMPLATE_CODE="SMS_465900001",
        WHISTLE_SMS_ALIYUN_ENDPOINT=sms.url + "/",
        WHISTLE_NOTIFY_RECEIPT_TIMEOUT_S=str(timeout_s),
        WHISTLE_NOTIFY_QUIET_HOURS="off",
    )
    log = work / "serve.log"
    exe = Path(sys.executable).with_name("whistle")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(str(exe), "serve", env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    unseen: list[dict[str, float]] = []
    seen: list[dict[str, float]] = []
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http:
            for _ in range(600):
                try:
                    if (await http.get("/api/v1/health")).status_code == 200 and mqtt_subscriptions(
                        log.read_text()
                    ) >= 2:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            (await http.post("/api/v1/registry", json=registry(rounds))).raise_for_status()
            token = (await http.post("/api/v1/users/W-17/tokens")).json()["token"]
            pub = Publisher(MqttEndpoint.parse(broker.url), f"bench-{uuid.uuid4().hex[:6]}")
            await pub.start()
            live = base.replace("http", "ws") + f"/api/v1/live?token={token}&recipient_id=W-17"
            async with websockets.connect(live) as page:
                json.loads(await page.recv())
                for i in range(rounds):
                    confirm = i % 2 == 1
                    n_sms = len(sms.requests)
                    t0 = time.monotonic()
                    pub.publish(f"whistle/v1/smoke/SM-{i:02d}/event", {"ts": now_ms(), "seq": 1, "event": "alarm"})
                    async with asyncio.timeout(60):
                        while (doc := json.loads(await page.recv()))["type"] != "notification":
                            pass
                    t_live = time.monotonic()
                    if confirm:
                        await page.send(json.dumps({"type": "receipt", "ids": [doc["id"]]}))
                        async with asyncio.timeout(30):
                            while json.loads(await page.recv())["type"] != "receipt.ok":
                                pass
                        t_ok = time.monotonic()
                        tid = doc["ticket_id"]
                        for _ in range(300):
                            history = (await http.get(f"/api/v1/tickets/{tid}")).json()["history"]
                            if any(e["action"] == "seen" for e in history):
                                break
                            await asyncio.sleep(0.05)
                        await asyncio.sleep(timeout_s + 3)  # well past the deadline: no SMS may follow
                        seen.append({"to_page_s": t_live - t0, "receipt_s": t_ok - t_live,
                                     "sms_after": float(len(sms.requests) - n_sms)})  # fmt: skip
                    else:
                        deadline = time.monotonic() + timeout_s + 60
                        while len(sms.requests) == n_sms and time.monotonic() < deadline:  # noqa: ASYNC110
                            await asyncio.sleep(0.02)
                        t_sms = time.monotonic()
                        unseen.append({"to_page_s": t_live - t0, "page_to_sms_s": t_sms - t_live,
                                       "over_deadline_s": t_sms - t_live - timeout_s})  # fmt: skip
                    print(f"round {i + 1}/{rounds}: {'confirmed' if confirm else 'not confirmed'}", flush=True)
            await pub.stop()
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
        await sms.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    def summary(rows: list[dict[str, float]], key: str) -> dict[str, float]:
        values = sorted(r[key] for r in rows)
        return {"median": round(statistics.median(values), 3), "max": round(values[-1], 3)} if values else {}

    return {
        "rounds": rounds,
        "receipt_timeout_s": timeout_s,
        "fire_to_page_s": summary(unseen + seen, "to_page_s"),
        "not_confirmed": {
            "page_to_sms_s": summary(unseen, "page_to_sms_s"),
            "sms_after_deadline_s": summary(unseen, "over_deadline_s"),
        },
        "confirmed": {
            "receipt_round_trip_s": summary(seen, "receipt_s"),
            "sms_sent": int(sum(r["sms_after"] for r in seen)),
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=5.0, help="WHISTLE_NOTIFY_RECEIPT_TIMEOUT_S for the run")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    result = asyncio.run(bench(args.rounds, args.timeout))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
