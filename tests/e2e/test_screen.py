"""The operations-center screen in Debian's headless Chromium (Selenium), against `whistle serve` as its own process.

The page renders the map of the registry's polygons and buildings, the trends, the rankings and device
health with CJK fonts; a smoke alarm published over MQTT reaches it over the live socket (the map turns
the building red, the ticker names the place and ages the alarm by the wall clock, although the device's
event time is 13 hours behind, as the demo's simulated clock is); a click on the building opens its card;
and a page without WebSocket falls back to polling.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import sys
import threading
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from app.broker import free_port
from simulators.live import Publisher
from stats.geo import wgs84_to_gcj02
from tests.browser import chromium, until
from tests.conftest import MosquittoBroker
from tests.helpers import screen_registry, wait_for
from whistle.mqtt import MqttEndpoint
from whistle.timeutil import HOUR_MS, now_ms

TOKEN = "screen-admin-token-0123456789"
EXE = Path(sys.executable).with_name("whistle")
B2 = (121.467, 31.214)  # RJ-B0002, in RJ-G1-M02


@dataclass
class Served:
    url: str
    mqtt: str


@asynccontextmanager
async def serve(mosquitto: MosquittoBroker, db_url: str, tmp_path: Path, **extra: str) -> AsyncIterator[Served]:
    """`whistle serve` on the test's Mosquitto and database, with the small street (and its polygons)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    env.update(
        WHISTLE_MQTT_URL=mosquitto.url,
        WHISTLE_DATABASE_URL=db_url,
        WHISTLE_HTTP=f"127.0.0.1:{port}",
        WHISTLE_ADMIN_TOKEN=TOKEN,
        WHISTLE_STATE_DIR=str(tmp_path),
        WHISTLE_MQTT_CLIENT_ID=f"screen-{uuid.uuid4().hex[:8]}",
        WHISTLE_SCREEN_POLL_S="2",
        **extra,
    )
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(str(EXE), "serve", env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5, headers={"Authorization": f"Bearer {TOKEN}"}) as http:

            async def up() -> bool:
                if proc.returncode is not None:
                    raise AssertionError("whistle serve exited:\n" + log.read_text(errors="replace")[-3000:])
                try:
                    return (await http.get("/api/v1/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, timeout=60, interval=0.2)
            r = await http.post("/api/v1/registry", json=screen_registry())
            assert r.status_code == 200, r.text
        yield Served(url, mosquitto.url)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def served(mosquitto: MosquittoBroker, db_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(mosquitto, db_url, tmp_path) as s:
        yield s


# What the page shows, read from the DOM and from the ECharts instances that draw it.
PROBE = """
const chart = id => echarts.getInstanceByDom(document.getElementById(id));
const opt = id => chart(id).getOption();
const map = opt('map');
const series = Object.fromEntries(map.series.map(s => [s.id, s.data.length]));
const text = id => document.getElementById(id).textContent;
return {
  updated: document.body.getAttribute('data-updated'),
  conn: text('connlabel'),
  auth: document.getElementById('auth').classList.contains('show'),
  regions: map.geo[0].regions.length,
  series: series,
  critical: document.getElementById('map').getAttribute('data-critical'),
  title: text('title'),
  trend24: opt('trend24').xAxis[0].data.length,
  trend7: opt('trend7').xAxis[0].data.length,
  ranks: opt('rankgrids').series.length + opt('rankworkers').series.length,
  health: opt('health').yAxis[0].data,
  kcrit: text('k-crit'), ktoday: text('k-today'), kopen: text('k-open'),
  ticker: [...document.querySelectorAll('#ticker .alarm')].map(a => ({
    kind: a.getAttribute('data-kind'), text: a.textContent})),
  cjk: document.fonts.check('20px "Noto Sans CJK SC"', '城运中心'),
  canvases: document.querySelectorAll('#map canvas').length,
};
"""

# The colour under a point of the map (WGS-84, as the page draws without a basemap), from its canvas.
PIXELS = """
const [lon, lat] = arguments;
const chart = echarts.getInstanceByDom(document.getElementById('map'));
const [x, y] = chart.convertToPixel({geoIndex: 0}, [lon, lat]);
const canvas = document.querySelector('#map canvas');
const r = canvas.width / canvas.clientWidth;
const d = canvas.getContext('2d').getImageData(Math.round(x * r) - 2, Math.round(y * r) - 2, 5, 5).data;
const px = [];
for (let i = 0; i < d.length; i += 4) px.push([d[i], d[i + 1], d[i + 2]]);
return {x: x, y: y, px: px};
"""


def probe(d: webdriver.Chrome) -> dict[str, Any]:
    return d.execute_script(PROBE)  # type: ignore[no-any-return]


def red_at(d: webdriver.Chrome, lon: float, lat: float) -> bool:
    px = d.execute_script(PIXELS, lon, lat)["px"]
    return any(r > 200 and g < 110 and b < 110 for r, g, b in px)


def publish_fire(mqtt_url: str, device: str) -> None:
    """A smoke detector's alarm whose event time is 13 hours behind the wall clock (the demo's lag)."""

    async def go() -> None:
        pub = Publisher(MqttEndpoint.parse(mqtt_url), f"screen-device-{uuid.uuid4().hex[:8]}")
        await pub.start()
        try:
            pub.publish(f"whistle/v1/smoke/{device}/event", {"ts": now_ms() - 13 * HOUR_MS, "seq": 1, "event": "alarm"})
            await asyncio.sleep(0.5)
        finally:
            await pub.stop()

    asyncio.run(go())


def look_at_the_screen(served: Served) -> None:
    with chromium(1920, 1080) as d:
        d.get(f"{served.url}/#token={TOKEN}")
        first = until(lambda: (p := probe(d))["updated"] and p["conn"] == "实时" and p, timeout=45, what="first render")
        assert not first["auth"] and "#token" not in d.current_url  # the token left the address bar
        assert first["cjk"], "no CJK font: install fonts-noto-cjk (scripts/ensure-system-deps)"
        assert first["regions"] == 2 and first["series"]["outlines"] == 1  # two micro-grids, G1's outline
        assert first["series"]["buildings"] == 2 and first["series"]["critical"] == 0 and first["critical"] == ""
        assert first["title"] == "数字吹哨 · 瑞金二路街道城运中心"
        assert (first["trend24"], first["trend7"], first["ranks"]) == (24, 7, 2)
        assert first["health"] == ["烟感", "电梯", "水表"]
        assert first["kcrit"] == "0" and first["canvases"] >= 1
        assert not red_at(d, *B2)

        publish_fire(served.mqtt, "SM-0003")
        after = until(
            lambda: (p := probe(d))["critical"] == "RJ-B0002" and p["ticker"] and p,
            timeout=30,
            what="the fire on screen",
        )
        top = after["ticker"][0]
        assert top["kind"] == "smoke.fire" and "火警" in top["text"] and "紧急" in top["text"]
        assert "微网格02" in top["text"] and "瑞金二路 1 弄 2 号" in top["text"]
        assert "刚刚" in top["text"] or "秒前" in top["text"], top  # the wall clock, not the 13-hour-old event time
        assert (after["kcrit"], after["ktoday"], after["kopen"]) == ("1", "1", "1")
        assert after["series"]["critical"] == 1
        until(lambda: red_at(d, *B2), timeout=10, what="a red building on the map")

        # a click on the building opens its card: devices, open alarms, tickets
        where = d.execute_script(PIXELS, *B2)
        m = d.find_element(By.ID, "map")
        ActionChains(d).move_to_element_with_offset(
            m, int(where["x"] - m.size["width"] / 2), int(where["y"] - m.size["height"] / 2)
        ).click().perform()
        card = until(
            lambda: "火警" in (t := d.find_element(By.ID, "card").text) and "设备 2 台" in t and t,
            timeout=15,
            what="the building's card",
        )
        assert "瑞金二路 1 弄 2 号" in card and "未清除告警 1" in card and "工单 · 未结 1" in card

    # without WebSocket the page polls (every 2 s here) and still sees the next fire
    with chromium(1920, 1080, no_websocket=True) as d:
        d.get(f"{served.url}/#token={TOKEN}")
        until(lambda: (p := probe(d))["updated"] and p["conn"] == "轮询", timeout=45, what="a polling page")
        publish_fire(served.mqtt, "SM-0001")
        polled = until(
            lambda: len((p := probe(d))["critical"].split()) == 2 and p, timeout=30, what="the second fire, polled"
        )
        assert sorted(polled["critical"].split()) == ["RJ-B0001", "RJ-B0002"] and polled["kcrit"] == "2"


async def test_the_screen_shows_the_street_and_a_fire_as_it_arrives(served: Served) -> None:
    await asyncio.to_thread(look_at_the_screen, served)


# A self-hosted basemap: a loopback XYZ tile server that answers every tile with one grey PNG.
def _png(grey: int = 96) -> bytes:
    """A 1x1 grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(bytes([0, grey]))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


TILE = _png()


@contextmanager
def tile_server() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(TILE)))
            self.end_headers()
            self.wfile.write(TILE)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    r = math.radians(lat)
    return int((lon + 180) / 360 * n), int((1 - math.log(math.tan(r) + 1 / math.cos(r)) / math.pi) / 2 * n)


def look_over_a_basemap(url: str, asked: list[str]) -> None:
    with chromium(1920, 1080) as d:
        d.get(f"{url}/#token={TOKEN}")
        until(lambda: probe(d)["updated"], timeout=45, what="first render")
        points = d.execute_script(
            "return echarts.getInstanceByDom(document.getElementById('map')).getOption()"
            ".series.find(s => s.id === 'buildings').data.map(p => [p.id, p.value[0], p.value[1]]);"
        )
        drawn = {p[0]: (p[1], p[2]) for p in points}
        lon, lat = wgs84_to_gcj02(121.466, 31.213)
        assert drawn["RJ-B0001"] == pytest.approx((lon, lat), abs=1e-6)  # GCJ-02, to sit on the basemap
        tiles = until(lambda: [p for p in asked if p.endswith(".png")], timeout=20, what="tile requests")
        zs = {int(p.split("/")[1]) for p in tiles}
        assert len(zs) == 1, tiles
        z = zs.pop()
        assert 14 <= z <= 19, tiles
        x, y = tile_of(lon, lat, z)
        assert f"/{z}/{x}/{y}.png" in tiles, (x, y, tiles)


async def test_a_self_hosted_basemap_in_gcj02(mosquitto: MosquittoBroker, db_url: str, tmp_path: Path) -> None:
    with tile_server() as (tiles, asked):
        async with serve(mosquitto, db_url, tmp_path, WHISTLE_SCREEN_TILES_URL=f"{tiles}/{{z}}/{{x}}/{{y}}.png") as s:
            async with httpx.AsyncClient(base_url=s.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                cfg = (await http.get("/api/v1/screen/config")).json()
            assert cfg == {"tiles_url": f"{tiles}/{{z}}/{{x}}/{{y}}.png", "tiles_crs": "gcj02", "poll_s": 2.0,
                           "low_battery_pct": 20.0}  # fmt: skip
            await asyncio.to_thread(look_over_a_basemap, s.url, asked)
