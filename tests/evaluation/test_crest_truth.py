"""Truth, absences and summary agree with each other, with the registry and with the messages."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from tests.evaluation.dataset import MINUTE_MS, Dataset

INCIDENTS = {
    "household.lone_elder_inactive",
    "household.group_rental_suspected",
    "ebike.indoor_charging",
    "water.continuous_flow",
}
CONFOUNDERS = {
    "confounder.long_nap",
    "confounder.quiet_afternoon",
    "confounder.elder_away",
    "confounder.flat_power_meter",
    "confounder.shift_worker",
    "confounder.visitors",
    "confounder.shop_in_flat",
    "confounder.large_family",
    "confounder.unregistered_occupant",
    "confounder.circuit_tv",
    "confounder.circuit_heater",
    "confounder.circuit_laptop",
}
KEYS = ["kind", "subject_type", "subject_ids", "start", "end", "confounder", "could_be_mistaken_for"]


def test_every_record_is_well_formed_and_names_known_subjects(district: Dataset) -> None:
    households = district.households()
    devices = {d["id"]: d for d in district.registry["devices"]}
    seen: Counter[str] = Counter()
    for t in district.truth:
        assert list(t)[:7] == KEYS and t["kind"] in INCIDENTS | CONFOUNDERS, t["kind"]
        seen[t["kind"]] += 1
        assert t["confounder"] == t["kind"].startswith("confounder.")
        assert bool(t["could_be_mistaken_for"]) == t["confounder"]
        assert set(t["could_be_mistaken_for"]) <= INCIDENTS
        assert ("declared" in t) == (t["kind"] == "confounder.elder_away")
        assert district.t0 <= t["start"] < district.t_end
        assert t["end"] is None or t["start"] < t["end"] <= district.t_end
        (subject,) = t["subject_ids"]
        if t["subject_type"] == "household":
            assert subject in households
        else:
            assert t["subject_type"] == "device"
            assert devices[subject]["household_id"] == t["details"]["household_id"]
            want = "water" if t["kind"] == "water.continuous_flow" else "ebike"
            assert devices[subject]["type"] == want
        if t["kind"] in {
            "household.lone_elder_inactive",
            "confounder.elder_away",
            "confounder.long_nap",
            "confounder.flat_power_meter",
        }:
            assert "lone_elder" in households[subject]["tags"]
        if t["kind"] == "household.group_rental_suspected":
            local = dt.datetime.fromtimestamp(t["start"] / 1000, tz=dt.timezone(dt.timedelta(hours=8)))
            assert (local.hour, local.minute) == (0, 0) and t["end"] is None
    assert set(seen) == INCIDENTS | CONFOUNDERS, set(INCIDENTS | CONFOUNDERS) - set(seen)


def test_declared_absences_are_exactly_the_declared_trips_and_cover_them(district: Dataset) -> None:
    declared = [t for t in district.of_kind("confounder.elder_away") if t["declared"]]
    assert declared and len(district.absences) == len(declared)
    by_key = {(a["household_id"], a["start"], a["end"]) for a in district.absences}
    for t in declared:
        d = t["details"]
        assert (t["subject_ids"][0], d["declared_start"], d["declared_end"]) in by_key
        start = dt.datetime.fromisoformat(d["declared_start"])
        end = dt.datetime.fromisoformat(d["declared_end"])
        assert start.utcoffset() == dt.timedelta(hours=8)
        assert int(start.timestamp() * 1000) <= t["start"]
        assert t["end"] is None or int(end.timestamp() * 1000) >= t["end"]
    for a in district.absences:
        assert set(a) == {"household_id", "start", "end", "note"} and a["note"]


def test_an_elder_away_draws_no_water(district: Dataset) -> None:
    for t in district.of_kind("confounder.elder_away"):
        meter = district.devices_of(t["subject_ids"][0])["water"]
        end = t["end"] or district.t_end
        if end - t["start"] > 60 * MINUTE_MS:
            assert district.use(meter, t["start"], end) == 0.0


def test_summary_counts_match_the_files(district: Dataset) -> None:
    s = district.summary
    assert s["args"] == {"households": 120, "days": 12, "seed": 11, "first_day": "2026-11-03", "incident_scale": 15.0}
    assert s["households"] == len(district.registry["households"])
    assert s["devices"] == dict(Counter(d["type"] for d in district.registry["devices"]))
    assert s["messages"] == len(district.lines)
    assert s["readings"] == sum(len(m["payload"]["batch"]) for m in district.lines)
    assert s["incidents"] == dict(Counter(t["kind"] for t in district.truth if not t["confounder"]))
    assert s["confounders"] == dict(Counter(t["kind"] for t in district.truth if t["confounder"]))
    assert s["declared_absences"] == len(district.absences)
    assert s["end_ms"] - s["first_ms"] == 12 * 86_400_000
