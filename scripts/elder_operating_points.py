"""Lone-elder inactivity: the trade-off between detection delay and false alerts, per setting (a TUNING tool).

    .venv/bin/python scripts/elder_operating_points.py --seeds 7 11 23 --out docs/tuning/elder_operating_points.json

Side door, not of record: the rule engine's processor is driven directly. The trade-off curve of record
is measured through the front door by `make eval` (evaluation/frontdoor/suite.py, docs/EVALUATION.md).

For each seed the simulator writes a district (600 households, 28 days, inactivity incidents raised
to 1 per 100 elder-days, each found after 14 h, so that a run holds about twenty of them) and only
the lone-elder households' water and power readings are decoded and kept. Each setting (overrides
of `household.lone_elder_inactive`, the first being the shipped defaults) then runs through the
rule engine's pure processor, without a broker or a database — the same code the rule engine
runs, minus transport — and is scored against the truth like `scripts/tune_harness.py` scores it:
recall, median and p90 delay from onset, and false alerts per 100 elder-days (declared trips are
recorded as absences, undeclared ones count against the model). It shows what a sub-district
gives up in false alerts for a faster alert, and so which overrides a street may choose.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.codecs import Limits, decode_message
from evaluation.scoring import AlarmRow, score_kind
from rules.catalog import BULK_RULES
from rules.config import RuleConfig
from rules.processor import PartitionState, Processor
from rules.topology import HouseholdInfo, Topology
from simulators.district import build_district
from simulators.params import Params
from simulators.stream import Simulation
from simulators.timebase import parse_start
from whistle.domain import DetectionAction, Reading
from whistle.timeutil import DAY_MS, HOUR_MS

KIND = "household.lone_elder_inactive"
FIRST_DAY = "2026-11-03"  # the evaluation's season: dark mornings and evenings

# The shipped defaults first; then faster and quieter settings either side of them.
SETTINGS: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("defaults", {}),
    ("quieter: day rank 1", {"day_rank": 1}),
    ("quieter: day rank 1, morning +1.5 h", {"day_rank": 1, "morning_slack_h": 1.5}),
    ("faster: day slack 1 h", {"slack_h": 1.0}),
    ("faster: day margin 1.0, morning +0.5 h", {"margin": 1.0, "morning_slack_h": 0.5}),
    ("fastest: day margin 1.0, slack 1 h, morning +0.5 h", {"margin": 1.0, "slack_h": 1.0, "morning_slack_h": 0.5}),
)


class Dataset:
    """One seed's lone-elder readings, truth and topology."""

    def __init__(self, seed: int, households: int, days: int) -> None:
        params = Params.from_overrides(
            {"incidents": {"lone_elder_inactive_per_elder_day": 0.01, "lone_elder_found_after_h": 14}}
        )
        d = build_district(households, seed=seed, params=params)
        reg = d.registry
        self.start = parse_start(FIRST_DAY)
        self.end = self.start + days * DAY_MS
        sim = Simulation(d, start_ms=self.start, end_ms=self.end, seed=seed)
        self.truth = [json.loads(line) for line in sim.truth_lines()]
        self.topology = Topology()
        elders = set()
        for h in reg["households"]:
            tags = frozenset(h.get("tags", []))
            self.topology.households[h["id"]] = HouseholdInfo(h.get("registered_occupants", 1), tags)
            if "lone_elder" in tags:
                elders.add(h["id"])
        self.elders = len(elders)
        self.days = days
        for t in self.truth:
            if t["kind"] == "confounder.elder_away" and t.get("declared") and t.get("end"):
                self.topology.absences.setdefault(t["subject_ids"][0], []).append((int(t["start"]), int(t["end"])))
        building = {h["id"]: h["building_id"] for h in reg["households"]}
        grid = {b["id"]: b["grid_id"] for b in reg["buildings"]}
        place = {
            dev["id"]: (dev["household_id"], building[dev["household_id"]], grid[building[dev["household_id"]]])
            for dev in reg["devices"]
            if dev.get("household_id") in elders and dev["type"] in ("water", "power")
        }
        self.readings: list[Reading] = []
        limits = Limits()
        for m in sim.messages():
            parts = m.topic.split("/")
            if len(parts) < 4 or parts[3] not in place:
                continue
            for x in decode_message(m.topic, m.payload, received_at=m.send_ms, limits=limits).accepted:
                p = place[x.device_id]
                self.readings.append(
                    Reading(x.device_id, x.device_type, x.channel, x.ts, m.send_ms, x.values, x.seq, *p)
                )


def run(ds: Dataset, overrides: Mapping[str, Any]) -> dict[str, Any]:
    config = RuleConfig({"rules": {KIND: dict(overrides)}})
    proc = Processor(BULK_RULES, config=config, topology=ds.topology)
    part = PartitionState()
    out: list[Any] = []
    for r in ds.readings:
        proc.process(part, r, out)
    open_: set[str] = set()
    rows: list[AlarmRow] = []
    for d in out:
        if d.kind.value != KIND:
            continue
        if d.action is DetectionAction.RAISE:
            if d.subject_id not in open_:
                open_.add(d.subject_id)
                rows.append(AlarmRow(KIND, d.subject_id, d.ts))
        else:
            open_.discard(d.subject_id)
    s = score_kind(
        KIND,
        ds.truth,
        rows,
        run_end=ds.end,
        early_ms=300_000,
        grace_ms=HOUR_MS,
        eligible=lambda i: i.start <= ds.end - 12 * HOUR_MS,
    )
    false = s.alarms - s.true_alarms
    return {
        "incidents": s.incidents,
        "recall": s.recall,
        "median_delay_h": s.median_delay_h,
        "p90_delay_h": s.p90_delay_h,
        "delays_h": [round(x / HOUR_MS, 2) for x in s.delays_ms],
        "false_alerts": false,
        "false_per_100_elder_days": round(100 * false / (ds.elders * ds.days), 2),
    }


def table(results: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> str:
    lines = [
        "| setting | overrides | incidents | recall | median delay h | p90 delay h | false alerts per 100 elder-days |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        per = res["per_seed"]
        delays = sorted(x for s in seeds for x in per[str(s)]["delays_h"])
        n = sum(per[str(s)]["incidents"] for s in seeds)
        found = len(delays)
        fp = statistics.mean(per[str(s)]["false_per_100_elder_days"] for s in seeds)
        p90 = delays[min(len(delays) - 1, int(0.9 * len(delays)))] if delays else None
        lines.append(
            f"| {res['name']} | `{json.dumps(res['overrides'])}` | {n} | {found / n:.2f} | "
            f"{statistics.median(delays):.2f} | {p90:.2f} | {fp:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    ap.add_argument("--households", type=int, default=600)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.monotonic()
    data = {s: Dataset(s, args.households, args.days) for s in args.seeds}
    results = []
    for name, over in SETTINGS:
        per = {str(s): run(ds, over) for s, ds in data.items()}
        results.append({"name": name, "overrides": over, "per_seed": per})
    doc = table(results, args.seeds)
    print(doc)
    print(
        f"({args.households} households x {args.days} days per seed, seeds {args.seeds}, {time.monotonic() - t0:.0f} s)"
    )
    if args.out:
        report = {"households": args.households, "days": args.days, "seeds": args.seeds, "results": results}
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
