"""The screen's data on the evening's street: the map, the counters, the trends, the ticker, a building's card."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from stats.geo import Crs, ring, wgs84_to_gcj02
from stats.places import building_detail, recent_alarms, street_map
from stats.summary import DeviceHealth, summary
from stats.trends import Bucket, trends
from tests.stats.conftest import NOW, T0, Evening, S
from whistle.domain import AlarmKind
from whistle.errors import Invalid
from whistle.timeutil import CHINA_TZ, to_datetime


def test_gcj02_matches_the_published_reference_values() -> None:
    # wandergis/coordtransform's README: wgs84togcj02(116.404, 39.915)
    lon, lat = wgs84_to_gcj02(116.404, 39.915)
    assert (round(lon, 9), round(lat, 9)) == (116.410244499, 39.916404282)
    assert wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)  # outside China nothing moves


def test_rings_are_closed_and_counterclockwise() -> None:
    cw = [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]
    assert ring(cw, Crs.WGS84) == [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    assert ring([[0, 0], [1, 1]], Crs.WGS84) is None


async def test_the_map_has_grids_with_subtree_counts_and_buildings_with_their_worst_alarm(evening: Evening) -> None:
    m = await street_map(evening.db, now=evening.now)
    assert m.streets == ["瑞金二路街道"]
    grids = {g.id: g for g in m.grids}
    g1, m01, m02 = grids["RJ-G1"], grids["RJ-G1-M01"], grids["RJ-G1-M02"]
    assert (g1.level, g1.leaf, m01.level, m01.leaf) == (0, False, 1, True)
    assert m02.open_alarms.as_dict() == {"critical": 0, "major": 1, "minor": 0, "warning": 1}  # C and D
    assert m02.open_alarms.worst == "major" and m02.open_tickets == 2
    assert m01.open_alarms.total == 0 and m01.open_alarms.worst is None and m01.open_tickets == 1  # E
    assert g1.open_alarms.total == 2 and g1.open_tickets == 3
    # on duty: no rosters, so whoever a new ticket would go to
    assert (m01.on_duty and m01.on_duty.name, m02.on_duty and m02.on_duty.id) == ("赵某", "W-LEAD")
    assert m01.ring is not None and m01.ring[0] == m01.ring[-1] and len(m01.ring) == 5
    assert m01.ring[1] == (121.4665, 31.211)  # turned counterclockwise
    b = {s.id: s for s in m.buildings}
    assert b["RJ-B0002"].open_alarms.worst == "major" and b["RJ-B0002"].silenced
    assert b["RJ-B0001"].point == (121.466, 31.213) and not b["RJ-B0001"].silenced
    assert [(s.scope_id, s.place, s.kinds) for s in m.silences] == [
        ("RJ-B0002", "瑞金二路 1 弄 2 号", ["elevator.ebike"])
    ]
    assert m.bbox == (121.464, 31.211, 121.47, 31.216)


async def test_the_map_in_gcj02_for_a_chinese_basemap(evening: Evening) -> None:
    m = await street_map(evening.db, now=evening.now, crs=Crs.GCJ02)
    b1 = next(s for s in m.buildings if s.id == "RJ-B0001")
    lon, lat = wgs84_to_gcj02(121.466, 31.213)
    assert b1.point == (round(lon, 7), round(lat, 7))
    assert b1.point[0] - 121.466 > 0.004  # about 450 m east in Shanghai


async def test_the_map_in_scope(evening: Evening) -> None:
    m = await street_map(evening.db, now=evening.now, grids=["RJ-G1-M01"])
    assert [g.id for g in m.grids] == ["RJ-G1-M01"] and [b.id for b in m.buildings] == ["RJ-B0001"]
    assert m.silences == []  # RJ-B0002's silence is not the caller's business


async def test_the_map_as_geojson_over_http(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/map")
    assert r.status_code == 200
    doc = r.json()
    assert doc["type"] == "FeatureCollection" and doc["coordinate_system"] == "wgs84"
    kinds = [(f["properties"]["kind"], f["geometry"]["type"]) for f in doc["features"]]
    assert kinds == [("grid", "Polygon")] * 3 + [("building", "Point")] * 2
    m02 = next(f for f in doc["features"] if f["id"] == "RJ-G1-M02")
    assert m02["properties"]["open_alarms"] == {"critical": 0, "major": 1, "minor": 0, "warning": 1, "total": 2}
    assert m02["properties"]["on_duty"] == {"id": "W-LEAD", "name": "张某"}
    ring_ = m02["geometry"]["coordinates"][0]
    assert ring_[0] == ring_[-1] and len(ring_) == 5
    gcj = (await client.get("/api/v1/map", params={"crs": "gcj02"})).json()
    assert gcj["coordinate_system"] == "gcj02" and gcj["bbox"][0] > doc["bbox"][0]
    assert (await client.get("/api/v1/map", params={"crs": "bd09"})).status_code == 422


async def test_the_counters(evening: Evening) -> None:
    s = await summary(evening.db, now=evening.now, low_battery_pct=20)
    assert s.day_start == datetime(2026, 11, 18, tzinfo=CHINA_TZ)
    assert s.alarms_today == 5
    assert s.alarms_today_by_kind == {"device.offline": 1, "elevator.fault": 1, "smoke.fire": 3}
    assert s.alarms_today_by_severity == {"critical": 3, "major": 1, "warning": 1}
    assert s.open_alarms_by_severity == {"major": 1, "warning": 1}
    assert s.open_tickets_by_status == {"dispatched": 3} and s.overdue_tickets == 1  # C; E's alarm cleared itself
    assert (s.tickets_created_today, s.tickets_resolved_today) == (5, 2)
    assert (s.mtta_s, s.mtt_arrive_s, s.mttr_s) == (180.0, 800.0, 1900.0)
    health = {d.type: d for d in s.devices}
    assert health["smoke"] == DeviceHealth("smoke", total=3, online=2, offline=1, never_seen=0, low_battery=1)
    assert health["water"] == DeviceHealth("water", total=1, online=0, offline=0, never_seen=1, low_battery=0)
    assert health["power"].total == 0 and s.active_silences == 1
    # tomorrow morning nothing has happened yet today, and C is still overdue
    later = await summary(evening.db, now=datetime(2026, 11, 19, 8, tzinfo=CHINA_TZ))
    assert (later.alarms_today, later.mtta_s, later.overdue_tickets) == (0, None, 1)


async def test_the_counters_over_http(client: httpx.AsyncClient) -> None:
    s = (await client.get("/api/v1/stats/summary")).json()
    assert (s["alarms_today"], s["open_alarms"], s["open_tickets"], s["overdue_tickets"]) == (5, 2, 3, 1)
    assert (s["low_battery"], s["low_battery_pct"], s["devices_online_share"]) == (1, 20.0, 0.6667)


async def test_hourly_and_daily_trends_fill_every_bucket(evening: Evening) -> None:
    # NOW is 20:00:00 sharp: the current hour has just begun and is the last bucket
    hours = await trends(evening.db, bucket=Bucket.HOUR, now=evening.now)
    assert len(hours) == 24
    assert (hours[0].start, hours[-1].start) == (
        datetime(2026, 11, 17, 21, tzinfo=CHINA_TZ),
        datetime(2026, 11, 18, 20, tzinfo=CHINA_TZ),
    )
    seven = hours[-2]
    assert (seven.start.hour, seven.total, seven.critical, seven.major, seven.warning) == (19, 5, 3, 1, 1)
    assert sum(h.total for h in hours) == 5
    fires = await trends(evening.db, bucket=Bucket.HOUR, now=evening.now, kind=AlarmKind.SMOKE_FIRE)
    assert fires[-2].total == 3
    # an explicit window: `until` is exclusive
    two = await trends(
        evening.db,
        bucket=Bucket.HOUR,
        now=evening.now,
        since=datetime(2026, 11, 18, 18, 30, tzinfo=CHINA_TZ),
        until=datetime(2026, 11, 18, 20, tzinfo=CHINA_TZ),
    )
    assert [(p.start.hour, p.total) for p in two] == [(18, 0), (19, 5)]
    days = await trends(evening.db, bucket=Bucket.DAY, now=evening.now)
    assert [d.start.day for d in days] == [12, 13, 14, 15, 16, 17, 18] and days[-1].total == 5
    scoped = await trends(evening.db, bucket=Bucket.DAY, now=evening.now, grids=["RJ-G1-M01"])
    assert scoped[-1].total == 2
    with pytest.raises(Invalid):
        await trends(evening.db, bucket=Bucket.HOUR, now=evening.now, since=to_datetime(T0 - 40 * 86_400 * S))


async def test_trends_over_http(client: httpx.AsyncClient) -> None:
    r = (await client.get("/api/v1/stats/trends", params={"bucket": "day", "kind": "elevator.fault"})).json()
    assert r["bucket"] == "day" and r["kind"] == "elevator.fault" and [p["total"] for p in r["items"]][-2:] == [0, 1]
    assert r["items"][-1]["start"] == "2026-11-18T00:00:00+08:00"
    assert (await client.get("/api/v1/stats/trends", params={"bucket": "week"})).status_code == 422


async def test_the_ticker_names_the_place_and_ages_by_detection(evening: Evening, client: httpx.AsyncClient) -> None:
    items = await recent_alarms(evening.db, limit=10)
    assert [(a.kind, a.status) for a in items] == [
        ("smoke.fire", "cleared"),  # E
        ("device.offline", "active"),
        ("elevator.fault", "active"),
        ("smoke.fire", "cleared"),  # B, resolved
        ("smoke.fire", "cleared"),  # A
    ]
    e = items[0]
    assert (e.grid_name, e.address, e.ticket_id, e.assignee_name) == (
        "微网格01",
        "瑞金二路 1 弄 1 号",
        evening.tickets["E"],
        "赵某",
    )
    assert e.detected_at == to_datetime(T0 + 2000 * S)  # the wall clock, not the event time
    assert [a.kind for a in await recent_alarms(evening.db, limit=10, open_only=True)] == [
        "device.offline",
        "elevator.fault",
    ]
    r = (await client.get("/api/v1/stats/ticker", params={"limit": 2})).json()
    assert r["now"] == to_datetime(NOW).isoformat().replace("+00:00", "Z")
    assert [(i["kind_label"], i["address"]) for i in r["items"]] == [
        ("火警", "瑞金二路 1 弄 1 号"),
        ("设备离线", "瑞金二路 1 弄 2 号"),
    ]


async def test_a_buildings_card(evening: Evening, client: httpx.AsyncClient) -> None:
    b = await building_detail(evening.db, "RJ-B0002", now=evening.now)
    assert b is not None
    assert (b.address, b.grid_name, b.floors, b.households) == ("瑞金二路 1 弄 2 号", "微网格02", 12, 0)
    assert [(d.id, d.type, d.online, d.offline_alarm) for d in b.devices] == [
        ("EL-0002", "elevator", None, False),
        ("SM-0003", "smoke", True, True),
    ]
    assert [a.kind for a in b.open_alarms] == ["device.offline", "elevator.fault"]
    t = evening.tickets
    assert [x.id for x in b.tickets] == [t["D"], t["C"], t["B"]]  # open ones, newest first, then finished ones
    assert [s.id for s in b.silences] == [evening.silence_id]
    one = await building_detail(evening.db, "RJ-B0001", now=evening.now)
    assert one is not None and [d.unit for d in one.devices] == [None, None, "1-101"]  # the flat's water meter
    assert await building_detail(evening.db, "RJ-B0002", now=evening.now, grids=["RJ-G1-M01"]) is None
    r = await client.get("/api/v1/buildings/RJ-B0002")
    assert r.status_code == 200 and r.json()["open_alarms"][0]["kind_label"] == "设备离线"
    assert (await client.get("/api/v1/buildings/RJ-B9999")).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/map",
        "/api/v1/buildings/RJ-B0001",
        "/api/v1/stats/summary",
        "/api/v1/stats/grids",
        "/api/v1/stats/workers",
        "/api/v1/stats/trends",
        "/api/v1/stats/ticker",
        "/api/v1/stats/grids/export",
        "/api/v1/screen/config",
    ],
)
async def test_the_screens_data_needs_the_token(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path, headers={"Authorization": ""})).status_code == 401
    assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401
