"""The behaviour in the messages is what PARAMS.md says: measured from the registers, as a scorer would."""

from __future__ import annotations

import datetime as dt
import statistics

import numpy as np

from tests.evaluation.dataset import MINUTE_MS, QUARTER_MS, Dataset

LOCAL = dt.timezone(dt.timedelta(hours=8))


def _ordinary(district: Dataset) -> list[dict[str, object]]:
    """Households with no truth record at all and no e-bike circuit: plain flats."""
    marked = {i for t in district.truth for i in t["subject_ids"]}
    marked |= {t["details"].get("household_id") for t in district.truth}
    return [
        h
        for h in district.registry["households"]
        if h["id"] not in marked and "lone_elder" not in h["tags"] and "ebike" not in district.devices_of(str(h["id"]))
    ]


def test_ordinary_households_use_chinese_amounts_of_water_and_power(district: Dataset) -> None:
    flats = _ordinary(district)
    assert len(flats) >= 40
    litres, kwh = [], []
    for h in flats:
        devs = district.devices_of(str(h["id"]))
        n = int(h["registered_occupants"])  # type: ignore[call-overload]
        litres.append(district.daily_use(devs["water"]) * 1000 / n)
        kwh.append(district.daily_use(devs["power"]) / n)
    # DOMAIN.md: ~125 L and ~1.7 kWh per person per day; households vary around it
    assert 100 <= statistics.mean(litres) <= 150, statistics.mean(litres)
    assert 1.3 <= statistics.mean(kwh) <= 2.2, statistics.mean(kwh)
    assert all(40 <= x <= 300 for x in litres), sorted(litres)[:3] + sorted(litres)[-3:]
    assert all(0.4 <= x <= 5.0 for x in kwh), sorted(kwh)[:3] + sorted(kwh)[-3:]


def test_lone_elder_inactivity_has_no_water_and_only_standby_power(district: Dataset) -> None:
    incidents = district.of_kind("household.lone_elder_inactive")
    assert len(incidents) >= 3
    households = district.households()
    for inc in incidents:
        (hid,) = inc["subject_ids"]
        assert "lone_elder" in households[hid]["tags"]
        d = inc["details"]
        start, end = inc["start"], inc["end"] or district.t_end
        assert 12 * 60 <= (end - start) / MINUTE_MS <= 24 * 60 or inc["end"] is None
        # no water at all from the start (register at the first quarter after the start = at the last one)
        assert district.use(d["water_meter"], start, end) == 0.0
        # before the start, the elder was drawing water
        assert district.use(d["water_meter"], start - 86_400_000, start) > 0.005
        # power: standby plus the lamp left on, plus the fridge's cycling at most, hour by hour
        base = d["standby_w"] + d["lamp_w"]
        top = base + d["cold_appliances_max_w"]
        a = -(-(start - district.t0) // QUARTER_MS) * QUARTER_MS + district.t0
        hours = []
        t = a
        while t + 3_600_000 <= min(end, district.t_end - QUARTER_MS):
            w = district.use(d["power_meter"], t, t + 3_600_000) * 1000  # Wh in the hour = mean W
            assert w <= top + 10.5, (hid, w, top)
            hours.append(w)
            t += 3_600_000
        assert hours, hid
        assert statistics.mean(hours) >= base - 10.5, (hid, statistics.mean(hours), base)


def test_group_rentals_use_several_times_the_water_per_registered_occupant(district: Dataset) -> None:
    ordinary = [
        district.daily_use(district.devices_of(str(h["id"]))["water"]) / int(h["registered_occupants"])  # type: ignore[call-overload]
        for h in _ordinary(district)
    ]
    norm = statistics.median(ordinary)
    rentals = district.of_kind("household.group_rental_suspected")
    assert len(rentals) >= 3
    households = district.households()
    for r in rentals:
        (hid,) = r["subject_ids"]
        reg = households[hid]["registered_occupants"]
        assert reg in (1, 2) and 5 <= r["details"]["actual_occupants"] <= 10
        devs = district.devices_of(hid)
        start = r["start"] + 86_400_000  # the first day is the moving-in day
        days = (district.t_end - QUARTER_MS - start) / 86_400_000
        per_reg = district.use(devs["water"], start, district.t_end) / days / reg
        assert per_reg >= 2.5 * norm, (hid, per_reg, norm)
        per_reg_kwh = district.use(devs["power"], start, district.t_end) / days / reg
        assert per_reg_kwh >= 1.5 * 1.7, (hid, per_reg_kwh)


def _rel_steps(w: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(np.diff(w)) / np.maximum(w[1:], 1.0))


def test_charging_is_flat_in_constant_current_while_a_tv_picture_varies(district: Dataset) -> None:
    sessions = district.of_kind("ebike.indoor_charging")
    assert len(sessions) >= 20
    cc_medians = []
    for s in sessions:
        d = s["details"]
        assert 4 * 60 - 1 <= ((s["end"] or 0) - s["start"]) / MINUTE_MS <= 10 * 60 or s["end"] is None
        assert 100 <= d["cc_w"] <= 620
        if d["circuit_loads"] or d["cc_min"] < 60 or s["end"] is None:
            continue  # only the charger (and a router) on the circuit: the CC phase alone
        (dev,) = s["subject_ids"]
        series = district.series[dev]
        i = int(np.searchsorted(series.ts, s["start"] + 5 * MINUTE_MS))
        w = series.value[i : i + d["cc_min"] - 10]
        assert abs(np.median(w) - d["cc_w"]) <= 0.08 * d["cc_w"] + 6.0
        cc_medians.append(float(np.median(_rel_steps(w))))
    assert cc_medians, "some sessions charge alone on their circuit"
    assert max(cc_medians) < 0.012, max(cc_medians)
    evening = sum(
        1
        for s in sessions
        if 18 <= dt.datetime.fromtimestamp(s["start"] / 1000, tz=LOCAL).hour < 23
        or s["details"]["start_kind"] == "evening"
    )
    assert evening / len(sessions) >= 0.6
    charging: dict[str, list[tuple[int, int]]] = {}
    for s in sessions:
        charging.setdefault(s["subject_ids"][0], []).append((s["start"], s["end"] or district.t_end))
    tv_medians = []
    for tv in district.of_kind("confounder.circuit_tv"):
        (dev,) = tv["subject_ids"]
        if any(a < tv["end"] and tv["start"] < b for a, b in charging.get(dev, [])):
            continue
        series = district.series[dev]
        i = int(np.searchsorted(series.ts, tv["start"] + 2 * MINUTE_MS))
        j = int(np.searchsorted(series.ts, tv["end"] - 2 * MINUTE_MS))
        w = series.value[i:j]
        if len(w) > 30 and np.median(w) > 30:
            tv_medians.append(float(np.median(_rel_steps(w))))
    assert len(tv_medians) >= 5
    assert statistics.median(tv_medians) > 0.015, statistics.median(tv_medians)


def test_continuous_flow_is_a_steady_draw_for_hours(district: Dataset) -> None:
    flows = district.of_kind("water.continuous_flow")
    assert flows
    for f in flows:
        (meter,) = f["subject_ids"]
        end = f["end"] or district.t_end
        assert 3 * 60 <= (end - f["start"]) / MINUTE_MS <= 30 * 60 or f["end"] is None
        lph = f["details"]["flow_lph"]
        assert 20 <= lph <= 200
        series = district.series[meter]
        i = int(np.searchsorted(series.ts, f["start"] + QUARTER_MS))
        j = int(np.searchsorted(series.ts, end - QUARTER_MS))
        per_quarter = np.diff(series.value[i:j]) * 1000
        # every quarter hour of the flow draws at least the leak (less one meter step of 1 L)
        assert np.all(per_quarter >= lph / 4 - 1.01), (meter, per_quarter.min(), lph)
