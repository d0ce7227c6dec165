"""Measure a generated dataset from its files, as a scorer would: ``python -m evaluation.crest.measure DIR``.

Prints per-person water and power of plain flats and of each kind of household, lone elders'
gaps between water draws, the group rentals' multiple, and the incidents' and charging sessions'
shapes. PARAMS.md quotes its output for the default runs.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

QUARTER_MS = 15 * 60_000
DAY_MS = 86_400_000
LOCAL = dt.timezone(dt.timedelta(hours=8))


def _load(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], list[dict[str, Any]], dict[str, Any]]:
    registry = json.loads((path / "registry.json").read_text(encoding="utf-8"))
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    truth = [json.loads(line) for line in (path / "truth.jsonl").read_text(encoding="utf-8").splitlines()]
    values: dict[str, list[tuple[int, float]]] = defaultdict(list)
    field = {"water": "total_m3", "power": "total_kwh"}
    with (path / "messages.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            msg = json.loads(line)
            kind = msg["topic"].split("/")[2]
            if kind in field:
                device = msg["topic"].split("/")[3]
                values[device] += [(item["ts"], item[field[kind]]) for item in msg["payload"]["batch"]]
    series = {d: np.array([v for _, v in sorted(rows)]) for d, rows in values.items()}
    return registry, series, truth, summary


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else float("nan")


def measure(path: Path) -> dict[str, Any]:
    """The figures PARAMS.md reports, from a dataset directory."""
    registry, series, truth, summary = _load(path)
    t0 = int(summary["first_ms"])
    devices: dict[str, dict[str, str]] = defaultdict(dict)
    for d in registry["devices"]:
        devices[d["household_id"]][d["type"]] = d["id"]
    days = (int(summary["end_ms"]) - t0) / DAY_MS
    marked: dict[str, set[str]] = defaultdict(set)
    for t in truth:
        for s in t["subject_ids"]:
            marked[t["details"].get("household_id", s)].add(t["kind"])
    out: dict[str, Any] = {"args": summary["args"]}
    per_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for h in registry["households"]:
        hid, reg = h["id"], h["registered_occupants"]
        w = series[devices[hid]["water"]]
        p = series[devices[hid]["power"]]
        litres = (w[-1] - w[0]) * 1000 / (days - 1 / 96) / reg
        kwh = (p[-1] - p[0]) / (days - 1 / 96) / reg
        kinds = marked.get(hid, set())
        if "lone_elder" in h["tags"]:
            label = "lone_elder"
        elif "household.group_rental_suspected" in kinds:
            label = "group_rental"
        elif kinds & {"confounder.shop_in_flat"}:
            label = "shop"
        elif kinds & {"confounder.shift_worker"}:
            label = "shift_worker"
        elif kinds & {"confounder.large_family"}:
            label = "large_family (5-6)"
        elif kinds & {"confounder.visitors", "confounder.unregistered_occupant", "water.continuous_flow"}:
            label = "visitors/unregistered/leak"
        elif "ebike" in devices[hid]:
            label = "plain flat with e-bike circuit"
        else:
            label = "plain flat"
        per_kind[label].append((float(litres), float(kwh)))
    out["per_registered_occupant"] = {
        k: {
            "n": len(v),
            "water_l_day_mean": round(float(np.mean([x[0] for x in v])), 1),
            "water_l_day_p10_p90": [_pct([x[0] for x in v], 10), _pct([x[0] for x in v], 90)],
            "power_kwh_day_mean": round(float(np.mean([x[1] for x in v])), 2),
            "power_kwh_day_p10_p90": [_pct([x[1] for x in v], 10), _pct([x[1] for x in v], 90)],
        }
        for k, v in sorted(per_kind.items())
    }
    plain = np.median([x[0] for x in per_kind["plain flat"]])
    out["group_rental_water_per_registered_vs_plain_median"] = (
        round(float(np.median([x[0] for x in per_kind["group_rental"]]) / plain), 2)
        if per_kind["group_rental"]
        else None
    )

    # lone elders: longest run of quarter hours without any water, per ordinary day (no trip or incident)
    skip: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for t in truth:
        if t["kind"] in ("confounder.elder_away", "household.lone_elder_inactive", "water.continuous_flow"):
            skip[t["details"].get("household_id", t["subject_ids"][0])].append(
                (t["start"], t["end"] or int(summary["end_ms"]))
            )
    day_gap: list[float] = []
    whole_gap: list[float] = []
    first_draw: list[float] = []
    for h in registry["households"]:
        if "lone_elder" not in h["tags"]:
            continue
        inc = np.diff(series[devices[h["id"]]["water"]]) > 0  # quarter k used water
        for d in range(int(days)):
            a, b = t0 + d * DAY_MS, t0 + (d + 1) * DAY_MS
            if any(s < b + DAY_MS // 2 and e > a - DAY_MS // 2 for s, e in skip[h["id"]]):
                continue
            q = inc[d * 96 : (d + 1) * 96]
            if len(q) < 96:
                continue
            for target, lo, hi in ((day_gap, 28, 84), (whole_gap, 0, 96)):
                run = best = 0
                for used in q[lo:hi]:
                    run = 0 if used else run + 1
                    best = max(best, run)
                target.append(best / 4)
            morning = np.nonzero(q[20:])[0]  # first draw after 05:00
            if len(morning):
                first_draw.append(5 + morning[0] / 4)
    out["elder_longest_dry_hours_07_21"] = {
        "median": _pct(day_gap, 50),
        "p90": _pct(day_gap, 90),
        "share_ge_6h": round(float(np.mean(np.array(day_gap) >= 6)), 3) if day_gap else None,
        "share_ge_8h": round(float(np.mean(np.array(day_gap) >= 8)), 3) if day_gap else None,
    }
    out["elder_longest_dry_hours_whole_day"] = {"median": _pct(whole_gap, 50), "p90": _pct(whole_gap, 90)}
    out["elder_first_draw_after_05_local_h"] = {
        "median": _pct(first_draw, 50),
        "p10_p90": [_pct(first_draw, 10), _pct(first_draw, 90)],
    }

    inc_hours = [
        dt.datetime.fromtimestamp(t["start"] / 1000, tz=LOCAL).hour
        for t in truth
        if t["kind"] == "household.lone_elder_inactive"
    ]
    out["inactivity_start_local_hours"] = sorted(inc_hours)
    sessions = [t for t in truth if t["kind"] == "ebike.indoor_charging"]
    if sessions:
        starts = Counter(dt.datetime.fromtimestamp(t["start"] / 1000, tz=LOCAL).hour for t in sessions)
        ended = [t for t in sessions if t["end"]]
        out["charging"] = {
            "sessions": len(sessions),
            "start_18_23_share": round(sum(v for k, v in starts.items() if 18 <= k < 23) / len(sessions), 3),
            "hours_mean": round(float(np.mean([(t["end"] - t["start"]) / 3_600_000 for t in ended])), 2),
            "cc_w_p10_p90": [
                _pct([t["details"]["cc_w"] for t in sessions], 10),
                _pct([t["details"]["cc_w"] for t in sessions], 90),
            ],
            "sharing_tv_or_heater_share": round(
                float(np.mean([bool({"tv", "heater"} & set(t["details"]["sharing_circuit_with"])) for t in sessions])),
                3,
            ),
            "charger": dict(Counter(t["details"]["charger"] for t in sessions)),
        }
    out["incidents"] = summary["incidents"]
    out["confounders"] = summary["confounders"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the measurements of the dataset in the directory given."""
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(measure(Path(args[0])), ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
