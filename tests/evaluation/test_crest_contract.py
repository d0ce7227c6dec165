"""Every message and the registry follow CONTRACT.md; the product's own decoder accepts every reading."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter

import numpy as np

from collectors.codecs import decode_message
from tests.evaluation.dataset import QUARTER_MS, Dataset

TOPIC = re.compile(r"^whistle/v1/(water|power|ebike)/([A-Za-z0-9_-]{1,64})/data$")
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
E164 = re.compile(r"^\+861[3-9]\d{9}$")
LOCAL = dt.timezone(dt.timedelta(hours=8))
FIELD = {"water": "total_m3", "power": "total_kwh", "ebike": "power_w"}


def _local_minute(ms: int) -> int:
    t = dt.datetime.fromtimestamp(ms / 1000, tz=LOCAL)
    return t.hour * 60 + t.minute


def test_messages_follow_the_device_protocol(district: Dataset) -> None:
    devices = {d["id"]: d["type"] for d in district.registry["devices"]}
    last_send = 0
    for msg in district.lines:
        assert set(msg) == {"send_at", "topic", "payload"}
        assert isinstance(msg["send_at"], int) and msg["send_at"] >= last_send, "sorted by send_at"
        last_send = msg["send_at"]
        m = TOPIC.match(msg["topic"])
        assert m, msg["topic"]
        dtype, device = m.groups()
        assert devices[device] == dtype
        payload = msg["payload"]
        assert set(payload) == {"batch"}
        batch = payload["batch"]
        assert 1 <= len(batch) <= 1000
        for text in (json.dumps(payload), json.dumps(payload, separators=(",", ":"))):
            assert len(text.encode("utf-8")) <= 16 * 1024
        assert len(batch) == (60 if dtype == "ebike" else 96)
        for item in batch:
            assert set(item) == {"ts", "seq", FIELD[dtype]}
            assert isinstance(item["ts"], int) and isinstance(item["seq"], int)
            assert isinstance(item[FIELD[dtype]], int | float) and item[FIELD[dtype]] >= 0
            assert item["ts"] <= msg["send_at"], "a reading is sent after it is taken"


def test_registers_never_go_down_and_seq_increases(district: Dataset) -> None:
    for device, s in district.series.items():
        assert np.all(np.diff(s.seq) > 0), device
        assert np.all(np.diff(s.ts) > 0), device
        if s.type in ("water", "power"):
            assert np.all(np.diff(s.value) >= 0), device
            assert np.all(np.diff(s.ts) == QUARTER_MS), device
            assert s.ts[0] == district.t0 and s.ts[-1] == district.t_end - QUARTER_MS


def test_meters_upload_their_day_once_in_two_windows_hours_apart(district: Dataset) -> None:
    windows: dict[str, Counter[str]] = {}
    for msg in district.lines:
        dtype, device = TOPIC.match(msg["topic"]).groups()  # type: ignore[union-attr]
        if dtype == "ebike":
            continue
        ts = [item["ts"] for item in msg["payload"]["batch"]]
        day0 = dt.datetime.fromtimestamp(ts[0] / 1000, tz=LOCAL)
        assert (day0.hour, day0.minute) == (0, 0) and ts[-1] - ts[0] == 95 * QUARTER_MS, "one local day, 96 readings"
        sent = dt.datetime.fromtimestamp(msg["send_at"] / 1000, tz=LOCAL)
        assert sent.date() == day0.date() + dt.timedelta(days=1)
        minute = _local_minute(msg["send_at"])
        window = "early" if 120 <= minute < 240 else "late" if 360 <= minute < 600 else "outside"
        assert window != "outside", (device, sent)
        windows.setdefault(device, Counter())[window] += 1
    power_first = 0
    for h in district.registry["households"]:
        devs = district.devices_of(h["id"])
        w, p = windows[devs["water"]], windows[devs["power"]]
        assert len(w) == 1 and len(p) == 1 and set(w) != set(p), "each meter keeps its window, the two differ"
        power_first += "early" in p
    share = power_first / len(district.registry["households"])
    assert 0.12 <= share <= 0.4, share


def test_the_products_decoder_accepts_every_reading(district: Dataset) -> None:
    """Through collectors.codecs.decode_message with the message's own send time as the arrival."""
    accepted = 0
    for msg in district.lines[:: max(1, len(district.lines) // 1500)]:
        result = decode_message(msg["topic"], json.dumps(msg["payload"]).encode(), received_at=msg["send_at"])
        assert not result.rejected, result.rejected[:1]
        accepted += len(result.accepted)
    assert accepted > 0


def test_registry_follows_the_contract(district: Dataset) -> None:
    reg = district.registry
    assert set(reg) == {"streets", "grids", "buildings", "households", "devices", "workers"}
    ids = [e["id"] for key in reg for e in reg[key]]
    assert len(ids) == len(set(ids)) and all(ID.match(i) for i in ids)
    assert len(reg["streets"]) == 1
    grids = {g["id"]: g for g in reg["grids"]}
    roots = [g for g in grids.values() if g["parent_id"] is None]
    assert len(roots) == 1
    micro = [g for g in grids.values() if g["parent_id"] == roots[0]["id"]]
    assert len(micro) == len(grids) - 1
    for g in grids.values():
        assert len(g["polygon"]) >= 3
        for lon, lat in g["polygon"]:
            assert 121.3 < lon < 121.6 and 31.1 < lat < 31.3
    for b in reg["buildings"]:
        assert b["grid_id"] in grids and grids[b["grid_id"]]["parent_id"] is not None
        lon, lat = b["location"]
        assert 121.3 < lon < 121.6 and 31.1 < lat < 31.3
        assert b["floors"] >= 1 and "号" in b["address"]
    buildings = {b["id"] for b in reg["buildings"]}
    assert len({b["address"] for b in reg["buildings"]}) == len(buildings)
    assert len({(h["building_id"], h["unit"]) for h in reg["households"]}) == len(reg["households"])
    by_hh: dict[str, list[str]] = {}
    for d in reg["devices"]:
        by_hh.setdefault(d["household_id"], []).append(d["type"])
    ebikes = 0
    for h in reg["households"]:
        assert h["building_id"] in buildings and h["registered_occupants"] >= 1
        assert set(h["tags"]) <= {"lone_elder", "rental"}
        types = sorted(by_hh[h["id"]])
        assert types in (["power", "water"], ["ebike", "power", "water"])
        ebikes += "ebike" in types
        for c in h["contacts"]:
            assert c["name"] and E164.match(c["phone"])
        if "lone_elder" in h["tags"]:
            assert h["registered_occupants"] == 1 and h["contacts"]
    assert 0.2 <= ebikes / len(reg["households"]) <= 0.4
    roles = Counter(w["role"] for w in reg["workers"])
    assert roles == {"grid_worker": len(micro), "grid_leader": 1, "street_center": 1}
    assert {w["grid_id"] for w in reg["workers"] if w["role"] == "grid_worker"} == {g["id"] for g in micro}
    for w in reg["workers"]:
        assert E164.match(w["phone"])
