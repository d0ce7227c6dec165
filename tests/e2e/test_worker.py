"""The grid worker's page (/m/) on a 360x640 phone in Debian's headless Chromium, against `whistle serve` as its own
process: the registry posted over HTTP, smoke alarms published over MQTT to a real Mosquitto, SMS through a
loopback Alibaba Cloud that checks every signature.

- A worker signs in, sees the fire arrive, the page confirms the notification it showed (no SMS follows),
  acknowledges, arrives with the position emulated through DevTools (`Emulation.setGeolocationOverride`, checked
  against the building), resolves it, and the operations-center screen shows it closed (已办结).
- Actions tapped with the network emulated off wait in the page's queue and go out, in order, once it is back.
- The page in a tab nobody looks at (its visibility emulated hidden) shows the fire and does not confirm it, and
  the fire falls over to SMS at the receipt deadline (the page confirms once it is looked at); the SMS names the
  code, and a reply of it from the worker's phone (the provider's callback) acknowledges; a one-tap link from an
  SMS acknowledges its ticket in a browser that is signed in to nothing, and gives nothing else.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By

from app.broker import free_port
from evaluation.frontdoor.processes import mqtt_subscriptions
from tests.alerts.channels.fakes import ALI_ID, ALI_SECRET, aliyun_fake
from tests.alerts.channels.http_server import LocalHttpServer
from tests.browser import chromium, until
from tests.conftest import MosquittoBroker
from tests.e2e.test_screen import probe, publish_fire
from tests.helpers import screen_registry, wait_for

TOKEN = "worker-admin-token-0123456789"
EXE = Path(sys.executable).with_name("whistle")
PASSWORD = "fire-lane 42 kitchen"
REPLY_KEY = "worker-reply-key-0123456789"
RECEIPT_S = 3.0
W17_PHONE, W21_PHONE = "+8613900000000", "+8613900000021"
NEAR_B1 = {"latitude": 31.21312, "longitude": 121.46608, "accuracy": 12}  # some 15 m from RJ-B0001


def registry() -> dict[str, Any]:
    """The small street with polygons, and a grid worker with a phone in micro-grid 02."""
    reg = copy.deepcopy(screen_registry())
    reg["workers"].append(
        {"id": "W-21", "name": "钱某", "phone": W21_PHONE, "grid_id": "RJ-G1-M02", "role": "grid_worker"}
    )
    return reg


@dataclass
class Served:
    url: str
    mqtt: str
    sms: LocalHttpServer
    http: httpx.AsyncClient
    log: Path

    async def ticket(self, ticket_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/v1/tickets/{ticket_id}")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def tickets(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.http.get("/api/v1/tickets")).json()["items"]
        return items

    def texts_to(self, phone: str) -> list[dict[str, str]]:
        return [json.loads(r.query["TemplateParam"]) for r in self.sms.requests if r.query.get("PhoneNumbers") == phone]


@asynccontextmanager
async def serve(mosquitto: MosquittoBroker, db_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """`whistle serve` with SMS through a loopback Alibaba Cloud, receipts awaited 3 s, SMS replies on."""
    sms = await LocalHttpServer(aliyun_fake()).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env.update(
        WHISTLE_MQTT_URL=mosquitto.url,
        WHISTLE_DATABASE_URL=db_url,
        WHISTLE_HTTP=f"127.0.0.1:{port}",
        WHISTLE_ADMIN_TOKEN=TOKEN,
        WHISTLE_STATE_DIR=str(tmp_path),
        WHISTLE_MQTT_CLIENT_ID=f"worker-{uuid.uuid4().hex[:8]}",
        WHISTLE_SCREEN_POLL_S="2",
        WHISTLE_SMS_ALIYUN_ACCESS_KEY_ID=ALI_ID,
        WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET=ALI_SECRET,
        WHISTLE_SMS_ALIYUN_SIGN_NAME="数字吹哨",
        WHISTLE_SMS_ALIYUN_TEMPLATE_CODE="SMS_465900001",
        WHISTLE_SMS_ALIYUN_ENDPOINT=sms.url + "/",
        WHISTLE_NOTIFY_RECEIPT_TIMEOUT_S=str(RECEIPT_S),
        WHISTLE_NOTIFY_QUIET_HOURS="off",
        WHISTLE_SMS_REPLY_KEY=REPLY_KEY,
    )
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(str(EXE), "serve", env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as http:

            async def up() -> bool:
                if proc.returncode is not None:
                    raise AssertionError("whistle serve exited:\n" + log.read_text(errors="replace")[-3000:])
                if mqtt_subscriptions(log.read_text(errors="replace")) < 2:
                    return False
                try:
                    return (await http.get("/api/v1/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, timeout=90, interval=0.2)
            assert (await http.post("/api/v1/registry", json=registry())).status_code == 200
            every_day = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "00:00"}
            r = await http.put("/api/v1/grids/RJ-G1-M01/roster", json={"shifts": [{"worker_id": "W-17", **every_day}]})
            assert r.status_code == 200, r.text
            r = await http.put("/api/v1/users/W-17/password", json={"password": PASSWORD})
            assert r.status_code < 300, r.text
            yield Served(url, mosquitto.url, sms, http, log)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await sms.stop()


# -- what the page shows ------------------------------------------------------------------------------------------

PAGE = """
const q = s => document.querySelector(s), all = s => [...document.querySelectorAll(s)];
return {
  state: document.body.getAttribute('data-state'),
  conn: q('#conn').textContent,
  tickets: all('#tickets .ticket').map(e => ({id: e.dataset.id, status: e.dataset.status,
                                               severity: e.dataset.severity, text: e.textContent})),
  empty: !q('#empty').hidden,
  notes: all('#notes li').map(e => ({id: e.dataset.id, seen: e.dataset.seen, text: e.textContent})),
  detail: {id: q('#detail').dataset.id, status: q('#detail').dataset.status, text: q('#detail').innerText},
  queue: {pending: q('#queue').dataset.pending, text: q('#queue').textContent, shown: !q('#queue').hidden},
  arrival: {text: q('#arrival').textContent, within: q('#arrival').dataset.within},
  onetap: {status: q('#onetap').dataset.status, text: q('#onetap').innerText, ack: !q('#o-ack').hidden},
  cjk: document.fonts.check('16px "Noto Sans CJK SC"', '网格员'),
};
"""


def page(d: webdriver.Chrome) -> dict[str, Any]:
    return d.execute_script(PAGE)  # type: ignore[no-any-return]


# Recorded in every page of these tests, for the message of a failure: script errors and the API's answers.
WATCH = """
window.__seen = [];
window.addEventListener('error', e => window.__seen.push('error: ' + e.message));
window.addEventListener('unhandledrejection', e => window.__seen.push('rejection: ' + e.reason));
const _fetch = window.fetch;
window.fetch = function (url, init) {
  const what = ((init && init.method) || 'GET') + ' ' + url;
  return _fetch.apply(this, arguments).then(r => { window.__seen.push(what + ' ' + r.status); return r; },
                                            e => { window.__seen.push(what + ' failed'); throw e; });
};
"""


@contextmanager
def phone(s: Served, **kw: Any) -> Iterator[webdriver.Chrome]:
    """A 360x640 phone; a failure inside says what the page saw and what the server logged."""
    with chromium(360, 640, mobile=True) as d:
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
        try:
            yield d
        except AssertionError as exc:
            try:
                seen = d.execute_script("return window.__seen || []")[-30:]
                state = page(d)
            except Exception as inner:  # the page itself is gone
                seen, state = [f"(no page: {inner!r})"], {}
            tail = s.log.read_text(errors="replace")[-2500:]
            raise AssertionError(f"{exc}\npage: {state}\nrequests: {seen}\nserve.log:\n{tail}") from None


def click(d: webdriver.Chrome, css: str) -> None:
    """A tap, as a worker's thumb would: the element scrolled to the middle of the screen first (the sticky
    header covers the top of the page)."""
    element = d.find_element(By.CSS_SELECTOR, css)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def sign_in(d: webdriver.Chrome, url: str) -> None:
    d.get(f"{url}/m/")
    until(lambda: page(d)["state"] == "signin", timeout=30, what="the sign-in form")
    d.find_element(By.ID, "si-user").send_keys("W-17")
    d.find_element(By.ID, "si-password").send_keys(PASSWORD)
    click(d, "#si-submit")
    until(lambda: page(d)["state"] == "list" and page(d)["conn"] == "实时", timeout=30, what="signed in, live")


def run(coro: Any) -> Any:
    """An API call of the test's from the Selenium thread (its own short-lived client)."""
    return asyncio.run(coro)


async def get_json(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
        return (await c.get(path)).json()


# -- 1. the closed loop from the phone -------------------------------------------------------------------------------


def answer_a_fire_from_the_phone(s: Served) -> float:
    with phone(s) as d:
        sign_in(d, s.url)
        first = page(d)
        assert first["empty"] and first["tickets"] == [] and first["cjk"], first
        d.execute_cdp_cmd("Browser.grantPermissions", {"origin": s.url, "permissions": ["geolocation"]})
        d.execute_cdp_cmd("Emulation.setGeolocationOverride", NEAR_B1)

        publish_fire(s.mqtt, "SM-0001")
        shown = until(lambda: (p := page(d))["tickets"] and p["notes"] and p, timeout=30, what="the fire on the phone")
        fired_at = time.monotonic()
        [card] = shown["tickets"]
        assert card["severity"] == "critical" and "火警" in card["text"] and "瑞金二路 1 弄 1 号" in card["text"]
        assert "刚刚" in card["text"] and "待接单" in card["text"], card  # aged by the wall clock
        # the page showed the notification while visible: it confirms it (delivered means seen)
        until(lambda: page(d)["notes"][0]["seen"] == "1", timeout=15, what="the receipt confirmed")

        click(d, f'.ticket[data-id="{card["id"]}"]')
        detail = until(lambda: (p := page(d))["state"] == "detail" and p["detail"]["id"] == card["id"] and p,
                       timeout=15, what="the ticket's detail")  # fmt: skip
        text = detail["detail"]["text"]
        assert "瑞金二路 1 弄 1 号" in text and "楼高 6 层" in text and "微网格01" in text, text
        assert "烟感报警：public kitchen 1F（SM-0001）" in text and "尚未被第二个探测器确认" in text, text
        assert "{" not in text  # the evidence in words, not JSON

        click(d, "#btn-ack")
        until(lambda: page(d)["detail"]["status"] == "acknowledged", timeout=15, what="acknowledged")
        click(d, "#btn-arrive")
        arrived = until(lambda: (p := page(d))["detail"]["status"] == "on_site" and p["arrival"]["within"] and p,
                        timeout=30, what="on site")  # fmt: skip
        assert arrived["arrival"]["within"] == "true" and "米内" in arrived["arrival"]["text"], arrived["arrival"]

        click(d, "#btn-resolve")
        click(d, 'input[name="outcome"][value="confirmed"]')
        d.find_element(By.ID, "resolve-note").send_keys("厨房油锅起火，已扑灭")
        click(d, "#resolve-submit")
        until(lambda: page(d)["detail"]["status"] == "resolved", timeout=15, what="resolved")
        click(d, "#back")
        until(lambda: (p := page(d))["state"] == "list" and p["empty"], timeout=15, what="nothing left to do")
        return fired_at


def screen_shows_it_closed(s: Served) -> None:
    with chromium(1920, 1080) as d:
        d.get(f"{s.url}/#token={TOKEN}")
        shown = until(lambda: (p := probe(d))["updated"] and p["ticker"] and p, timeout=45, what="the screen")
        top = shown["ticker"][0]
        assert top["kind"] == "smoke.fire" and "已办结" in top["text"], top
        assert shown["kcrit"] == "0" and shown["critical"] == ""


async def test_a_grid_worker_answers_a_fire_from_the_phone_and_the_screen_sees_it_closed(
    mosquitto: MosquittoBroker, db_url: str, tmp_path: Path
) -> None:
    async with serve(mosquitto, db_url, tmp_path) as s:
        fired_at = await asyncio.to_thread(answer_a_fire_from_the_phone, s)
        [t] = await s.tickets()
        assert (t["status"], t["assignee_id"], t["outcome"]) == ("resolved", "W-17", "confirmed")
        steps = [(e["action"], e["actor"]) for e in t["history"] if e["actor"] != "system"]
        assert steps == [("seen", "W-17"), ("ack", "W-17"), ("arrive", "W-17"), ("resolve", "W-17")], t["history"]
        arrive = next(e for e in t["history"] if e["action"] == "arrive")["data"]
        assert arrive["within_radius"] is True and arrive["position"]["accuracy_m"] == 12
        assert 5 < arrive["distance_m"] < 40 and arrive["radius_m"] == 200
        seen = next(e for e in t["history"] if e["action"] == "seen")["data"]
        assert seen["via"] == "live"  # confirmed over the live socket
        # the receipt deadline is long past: the fire the page confirmed never went on to SMS
        await asyncio.sleep(max(0.0, fired_at + RECEIPT_S + 2 - time.monotonic()))
        assert s.texts_to(W17_PHONE) == []
        assert not any(e["action"] == "unseen" for e in (await s.ticket(t["id"]))["history"])
        await asyncio.to_thread(screen_shows_it_closed, s)


# -- 2. offline -----------------------------------------------------------------------------------------------------


def tap_while_offline(s: Served, ticket_id: str) -> None:
    with phone(s) as d:
        sign_in(d, s.url)
        until(lambda: any(t["id"] == ticket_id for t in page(d)["tickets"]), timeout=30, what="the ticket listed")
        click(d, f'.ticket[data-id="{ticket_id}"]')
        until(lambda: page(d)["detail"]["id"] == ticket_id, timeout=15, what="the detail")
        d.execute_cdp_cmd("Network.enable", {})
        offline = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
        d.execute_cdp_cmd("Network.emulateNetworkConditions", offline)
        until(lambda: page(d)["conn"] == "离线", timeout=15, what="the page knows it is offline")
        click(d, "#btn-ack")
        d.find_element(By.ID, "comment-note").send_keys("楼道有烟味，正在敲门")
        click(d, "#comment-submit")
        queued = until(lambda: (p := page(d))["queue"]["pending"] == "2" and p, timeout=15, what="two queued")
        assert "离线" in queued["queue"]["text"] and "接单" in queued["queue"]["text"], queued["queue"]
        still = run(get_json(s.url, f"/api/v1/tickets/{ticket_id}"))
        assert still["status"] == "dispatched"  # nothing left the phone
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {**offline, "offline": False})
        until(lambda: page(d)["queue"]["pending"] == "0", timeout=30, what="the queue sent")
        until(lambda: page(d)["detail"]["status"] == "acknowledged", timeout=15, what="the page up to date")


async def test_actions_tapped_offline_are_sent_when_the_network_is_back(
    mosquitto: MosquittoBroker, db_url: str, tmp_path: Path
) -> None:
    async with serve(mosquitto, db_url, tmp_path) as s:
        await asyncio.to_thread(publish_fire, s.mqtt, "SM-0002")
        [t] = await wait_for(s.tickets, timeout=30, interval=0.2)
        await asyncio.to_thread(tap_while_offline, s, t["id"])
        after = await s.ticket(t["id"])
        mine = [e for e in after["history"] if e["actor"] == "W-17" and e["action"] in ("ack", "comment")]
        assert [e["action"] for e in mine] == ["ack", "comment"]  # in the order they were tapped
        assert all(e["data"]["queued_at"] for e in mine)  # and marked as sent late
        assert mine[1]["note"] == "楼道有烟味，正在敲门"


# -- 3. delivered means seen, and acknowledging from the message ---------------------------------------------------


def one_tap_in_a_fresh_browser(s: Served, link: str) -> dict[str, Any]:
    url = s.url
    with phone(s) as d:
        d.get(link)
        shown = until(lambda: (p := page(d))["state"] == "onetap" and p["onetap"]["status"] and p, timeout=30,
                      what="the one-tap page")  # fmt: skip
        assert shown["onetap"]["status"] == "dispatched" and shown["onetap"]["ack"], shown["onetap"]
        assert "瑞金二路 1 弄 2 号" in shown["onetap"]["text"] and "钱某" in shown["onetap"]["text"]
        click(d, "#o-ack")
        done = until(lambda: (p := page(d))["onetap"]["status"] == "acknowledged" and p, timeout=15, what="acked")
        assert not done["onetap"]["ack"]
        # and nothing else: this browser is signed in to nothing
        probe_api = "return fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.status);"
        statuses = {
            path: d.execute_script(probe_api, path)
            for path in ("/api/v1/me", "/api/v1/tickets", "/api/v1/me/tickets", "/api/v1/me/notifications")
        }
        assert set(statuses.values()) == {401}, statuses
        assert not d.get_cookies(), d.get_cookies()
        d.get(f"{url}/m/")
        until(lambda: page(d)["state"] == "signin", timeout=30, what="the page asks to sign in")
        return done


HIDDEN = """
Object.defineProperty(document, 'visibilityState', {get: () => window.__shown || 'hidden', configurable: true});
Object.defineProperty(document, 'hidden', {get: () => (window.__shown || 'hidden') !== 'visible', configurable: true});
"""


def a_tab_nobody_looks_at(s: Served) -> dict[str, str]:
    """W-17's page open in a tab behind others: the fire is shown there, never confirmed, and goes on to SMS;
    once the worker looks at the tab, the page confirms it."""
    with phone(s) as d:
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HIDDEN})
        sign_in(d, s.url)
        publish_fire(s.mqtt, "SM-0001")
        shown = until(lambda: (p := page(d))["notes"] and p, timeout=30, what="the fire on the hidden page")
        assert shown["notes"][0]["seen"] == "0" and s.texts_to(W17_PHONE) == []
        [text] = until(lambda: s.texts_to(W17_PHONE), timeout=RECEIPT_S + 30, what="the SMS after the deadline")
        assert page(d)["notes"][0]["seen"] == "0"  # still not confirmed: nobody has looked
        d.execute_script("window.__shown = 'visible'; document.dispatchEvent(new Event('visibilitychange'));")
        until(lambda: page(d)["notes"][0]["seen"] == "1", timeout=15, what="confirmed once looked at")
        return text


async def test_a_fire_nobody_looks_at_goes_to_sms_and_the_message_itself_acknowledges(
    mosquitto: MosquittoBroker, db_url: str, tmp_path: Path
) -> None:
    async with serve(mosquitto, db_url, tmp_path) as s:
        text = await asyncio.to_thread(a_tab_nobody_looks_at, s)
        [t] = await s.tickets()
        assert text["code"] == t["code"] and text["link"].startswith(f"{s.url}/m/a/"), text
        history = [(e["action"], e["actor"]) for e in (await s.ticket(t["id"]))["history"]]
        assert history.index(("unseen", "system")) < history.index(("seen", "W-17")), history

        # the reply: W-17 answers the SMS with the code; the provider calls back (Alibaba Cloud's SmsUp format)
        push = [{"phone_number": W17_PHONE.removeprefix("+86"), "content": f"{text['code']} 收到",
                 "send_time": "2026-11-24 10:15:00", "dest_code": "1234", "sequence_id": 1}]  # fmt: skip
        async with httpx.AsyncClient(base_url=s.url, timeout=10) as provider:
            r = await provider.post(f"/api/v1/sms/replies/aliyun?key={REPLY_KEY}", json=push)
        assert r.status_code == 200 and r.json()["code"] == 0, r.text
        acked = await s.ticket(t["id"])
        assert acked["status"] == "acknowledged"
        assert [(e["actor"], e["data"]["via"]) for e in acked["history"] if e["action"] == "ack"] == [
            ("W-17", "sms_reply")
        ]

        # the one-tap link: a fire in W-21's building; W-21 has no page open, so the SMS goes at once
        await asyncio.to_thread(publish_fire, s.mqtt, "SM-0003")

        async def texts_to_w21() -> list[dict[str, str]]:
            return s.texts_to(W21_PHONE)

        [other] = await wait_for(texts_to_w21, timeout=30, interval=0.2)
        assert other["link"].startswith(f"{s.url}/m/a/")
        done = await asyncio.to_thread(one_tap_in_a_fresh_browser, s, other["link"])
        assert "钱某" in done["onetap"]["text"]
        mine = next(x for x in await s.tickets() if x["assignee_id"] == "W-21")
        assert mine["status"] == "acknowledged"
        assert [(e["actor"], e["data"]["via"]) for e in mine["history"] if e["action"] == "ack"] == [
            ("W-21", "one_tap")
        ]
