"""INTERNAL TUNING HARNESS — its figures are not of record.

The figures of record come from the front-door evaluation (`make eval`, `python -m evaluation.frontdoor`,
docs/EVALUATION.md), which drives only the product's public surfaces. This harness goes through the
side door on purpose, to iterate on the models quickly: it imports the registry into the database
before the runtime starts, runs the collector, rules and alerts in this process, switches the daily
household job off and calls `compute_days` and the group-rental model itself for every day. It hides
exactly what issue 14 found (the registry reaching the rules late, history never featurised), so a
model that looks good here may do nothing through the front door. Use it for tuning, never quote it.

    .venv/bin/python scripts/tune_harness.py --households 600 --days 21 --seed 7 --params scripts/eval_params.json
    (make tune; its report goes to docs/tuning/HARNESS.md and docs/tuning/harness_seed7.json)

What it does:

1. A private Mosquitto (Debian's) on a loopback port and an embedded PostgreSQL in a temporary
   directory.
2. `whistle simulate --registry-out --truth-out` writes the district and its ground truth; the
   registry is imported, and the declared trips of the truth (`confounder.elder_away` with
   `declared: true`) are recorded as absences, as a family would report them.
3. The collector, the rule engine and the alerts service run in this process on the in-process
   bus (`whistle serve` without the API); `whistle simulate --backfill` publishes the span at
   QoS 1 from its own process, as fast as the broker takes it.
4. When the collector has taken every message and the rules and alerts have caught up, the daily
   household job runs for each day of the span (group rental).
5. The alarms are scored per kind against the truth (`evaluation.scoring`), and so are the fixed
   rules in use today on the same stored data (`rules.baselines`): the 12-hour water rule for
   lone elders and the electricity-only group-rental screen.

The report goes to `--json-out` and, with `--doc`, to docs/tuning/HARNESS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.mosquitto import start_mosquitto
from app.runtime import Runtime, run
from evaluation.scoring import AlarmRow, Incident, KindScore, score_kind
from rules.baselines import fixed_water_rule, power_only_group_rental
from rules.config import RuleConfig
from rules.household_job import LOCAL, compute_days, day_end_ms, group_rental_detections, load_features
from whistle.absences import add_absence
from whistle.bus import TOPIC_DETECTIONS
from whistle.registry import import_registry, parse_registry
from whistle.serde import encode_detection
from whistle.settings import Settings
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres

log = logging.getLogger("tune_harness")
HOUR = 3_600_000
DAY = 24 * HOUR
EXE = Path(sys.executable).with_name("whistle")

KINDS = (
    "household.lone_elder_inactive",
    "household.group_rental_suspected",
    "ebike.indoor_charging",
    "smoke.fire",
    "elevator.trapped",
    "elevator.fault",
    "water.continuous_flow",
    "device.offline",
)


def simulate(args: argparse.Namespace, start: str, work: Path, *, publish_to: str | None) -> dict[str, Any]:
    """Run `whistle simulate`; returns its JSON summary."""
    cmd = [
        str(EXE),
        "simulate",
        "--households",
        str(args.households),
        "--seed",
        str(args.seed),
        "--start",
        start,
        "--days",
        str(args.days),
        "--backfill",
    ]
    cmd += ["--nbiot-batch", str(args.nbiot_batch), "--power-batch", str(args.power_batch)]
    cmd += ["--ebike-interval", str(args.ebike_interval), "--malformed-share", str(args.malformed_share)]
    if args.params is not None:
        cmd += ["--params", str(args.params)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
    if publish_to is None:
        cmd += ["--registry-out", str(work / "registry.json"), "--truth-out", str(work / "truth.jsonl")]
    else:
        env["WHISTLE_MQTT_URL"] = publish_to
        cmd += ["--connections", str(args.connections)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - our own CLI
    if res.returncode != 0:
        raise SystemExit(f"whistle simulate failed ({res.returncode}):\n{res.stderr[-3000:]}")
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


async def declare_absences(db: Database, truth: Sequence[Mapping[str, Any]]) -> int:
    n = 0
    for t in truth:
        if t["kind"] == "confounder.elder_away" and t.get("declared") and t.get("end"):
            start = datetime.fromtimestamp(t["start"] / 1000, LOCAL)
            end = datetime.fromtimestamp(t["end"] / 1000, LOCAL)
            await add_absence(db, t["subject_ids"][0], start=start, end=end, note="evaluation", actor="family")
            n += 1
    return n


async def wait_drained(rt: Runtime, expected_messages: int, deadline_s: float) -> dict[str, Any]:
    """Until the collector took every message and rules and alerts consumed everything on the bus."""
    assert rt.collector is not None and rt.rules is not None and rt.alerts_worker is not None
    bus = rt.bus
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        stats = rt.collector.stats
        readings_total = sum(sum(bus.end_offsets(t)) for t in ("whistle.priority", "whistle.readings"))
        detections_total = sum(bus.end_offsets(TOPIC_DETECTIONS))
        if (
            stats.messages >= expected_messages
            and rt.rules.evaluated >= readings_total
            and rt.alerts_worker.applied >= detections_total
        ):
            return {"messages": stats.messages, "readings": readings_total, "detections": detections_total}
        await asyncio.sleep(0.5)
    raise SystemExit(
        f"pipeline not drained within {deadline_s} s:"
        f" collector {rt.collector.stats.messages}/{expected_messages} messages"
    )


async def alarm_rows(db: Database) -> list[AlarmRow]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, subject_id, (extract(epoch FROM first_seen) * 1000)::bigint FROM alarms ORDER BY first_seen"
        )
        return [AlarmRow(k, s, int(t)) for k, s, t in await cur.fetchall()]


async def water_intervals(db: Database, households: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """Per household, (interval end ms, litres) from the stored water registers (resets and long gaps as 0)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT d.household_id, (extract(epoch FROM r.ts) * 1000)::bigint,"
            " ((r.payload ->> 'total_m3')::float8 - lag((r.payload ->> 'total_m3')::float8)"
            "  OVER (PARTITION BY r.device_id ORDER BY r.ts)) * 1000"
            " FROM readings r JOIN devices d ON d.id = r.device_id"
            " WHERE r.device_type = 'water' AND r.channel = 'data' AND d.household_id = ANY(%s)"
            " ORDER BY d.household_id, r.ts",
            (list(households),),
        )
        out: dict[str, list[tuple[int, float]]] = {}
        for hid, ts, litres in await cur.fetchall():
            out.setdefault(hid, []).append((int(ts), max(float(litres or 0.0), 0.0)))
    return out


async def lone_elders(db: Database) -> list[str]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT id FROM households WHERE 'lone_elder' = ANY(tags) ORDER BY id")
        return [r[0] for r in await cur.fetchall()]


def eligible_for(kind: str, span: tuple[int, int]) -> Any:
    """Incidents a detector can be judged on within the span."""
    hi = span[1]
    need = {
        "household.lone_elder_inactive": 12 * HOUR,
        "household.group_rental_suspected": 13 * DAY,
        "water.continuous_flow": 2 * HOUR,
        "device.offline": 3 * HOUR,
        "ebike.indoor_charging": 15 * 60_000,
    }.get(kind, 0)

    def ok(i: Incident) -> bool:
        if kind == "household.group_rental_suspected":
            return i.start <= hi - need  # pre-existing rentals start with the run
        if kind == "device.offline" and i.end is not None and i.end - i.start < need:
            return False  # shorter than a meter's three missed readings: nobody should call that offline
        if kind == "ebike.indoor_charging" and i.end is not None and i.end - i.start < need:
            return False
        return i.start <= hi - need

    return ok


def fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}" if not pct else f"{100 * x:.1f} %"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()
    today = datetime.now(LOCAL).date()
    # A fixed first day makes a run repeatable (the season sets sunrise, heating and cooling); without
    # one, the span ends a day before now. Either way it lies in the past: no wall-clock effects.
    first_day = args.first_day or today - timedelta(days=args.days + 1)
    if first_day + timedelta(days=args.days) >= today:
        raise SystemExit(f"--first-day {first_day}: the {args.days} days must end before today")
    start = first_day.isoformat()
    span = (int(datetime.combine(first_day, datetime.min.time(), LOCAL).timestamp() * 1000),)
    span = (span[0], span[0] + args.days * DAY)
    with tempfile.TemporaryDirectory(prefix="whistle-eval-") as tmp:
        work = Path(tmp)
        simulate(args, start, work, publish_to=None)
        truth = [json.loads(ln) for ln in (work / "truth.jsonl").read_text().splitlines() if ln.strip()]
        broker = start_mosquitto(work / "mqtt")
        pg = EmbeddedPostgres(work / "pg", database="evaluation")
        url = await asyncio.to_thread(pg.start)
        try:
            db = Database(url, max_size=4)
            await db.start()
            try:
                await import_registry(db, parse_registry(json.loads((work / "registry.json").read_text())))
                absences = await declare_absences(db, truth)
                settings = Settings(
                    mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
                    database_url=url,
                    http="127.0.0.1:9",
                    admin_token="evaluation-token-0123456789",  # noqa: S106 - no API in this process
                    state_dir=work,
                    mqtt_client_id="evaluation",
                    # accept and keep every day of the span, however long ago it lies (a past season)
                    reading_horizon_days=max(45, (today - first_day).days + 2),
                    readings_retention_days=max(400, (today - first_day).days + 30),
                )
                stop = asyncio.Event()
                ready: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()

                async def on_ready(rt: Runtime) -> None:
                    ready.set_result(rt)

                task = asyncio.create_task(run(settings, ["collector", "rules", "alerts"], stop, on_ready=on_ready))
                rt = await asyncio.wait_for(ready, 60)
                assert rt.rules is not None
                rt.rules.household_job = None  # the evaluation runs the daily job itself, for every day
                t_pub = time.monotonic()
                summary = await asyncio.to_thread(simulate, args, start, work, publish_to=settings.mqtt_url)
                published = int(summary.get("messages") or summary.get("acknowledged") or 0)
                pub_s = time.monotonic() - t_pub
                drained = await wait_drained(rt, published, args.deadline)
                ingest_s = time.monotonic() - t_pub
                if published and not drained["readings"]:
                    stop.set()
                    raise SystemExit(f"{published} messages published and no reading taken: see the dead letters")
                if args.ingest_only:
                    report = await ingest_report(db, truth, drained)
                    stop.set()
                    await asyncio.wait_for(task, 60)
                    report["run"] = {
                        "households": args.households,
                        "days": args.days,
                        "seed": args.seed,
                        "messages_published": published,
                        "publish_seconds": round(pub_s, 1),
                        "ingest_seconds": round(ingest_s, 1),
                    }
                    return report
                last_day = first_day + timedelta(days=args.days - 1)
                await compute_days(db, first_day, last_day)
                params = rt.rules.watcher.config.params().group_rental
                for k in range(params.window_days - 1, args.days):
                    as_of = first_day + timedelta(days=k)
                    dets = await group_rental_detections(db, as_of, params)
                    if dets:
                        await rt.bus.send_many(
                            TOPIC_DETECTIONS, [(d.subject_id.encode(), encode_detection(d)) for d in dets]
                        )
                await wait_drained(rt, published, args.deadline)
                alarms = await alarm_rows(db)
                report = await score(db, args, truth, alarms, span, first_day)
                stop.set()
                await asyncio.wait_for(task, 60)
            finally:
                await db.stop()
        finally:
            await asyncio.to_thread(pg.stop)
            broker.stop()
    report["run"] = {
        "households": args.households,
        "days": args.days,
        "seed": args.seed,
        "params": json.loads(args.params.read_text()) if args.params else {},
        "first_day": first_day.isoformat(),
        "messages_published": published,
        "readings": drained["readings"],
        "detections": drained["detections"],
        "declared_absences": absences,
        "publish_seconds": round(pub_s, 1),
        "ingest_seconds": round(ingest_s, 1),
        "total_seconds": round(time.monotonic() - t_start, 1),
    }
    return report


async def ingest_report(db: Database, truth: Sequence[Mapping[str, Any]], drained: Mapping[str, Any]) -> dict[str, Any]:
    """What was stored, against what was published and what the truth lists."""
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM readings")
        stored = (await cur.fetchone() or (0,))[0]
        cur = await conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason")
        dead = dict(await cur.fetchall())
    kinds: dict[str, int] = {}
    for t in truth:
        kinds[t["kind"]] = kinds.get(t["kind"], 0) + 1
    return {
        "readings_on_bus": drained["readings"],
        "readings_stored": stored,
        "dead_letters": dead,
        "truth_lines_by_kind": dict(sorted(kinds.items())),
        "malformed_in_truth": kinds.get("malformed", 0),
    }


async def score(
    db: Database,
    args: argparse.Namespace,
    truth: Sequence[Mapping[str, Any]],
    alarms: Sequence[AlarmRow],
    span: tuple[int, int],
    first_day: date,
) -> dict[str, Any]:
    run_end = span[1]
    kinds: dict[str, KindScore] = {}
    for kind in KINDS:
        kinds[kind] = score_kind(
            kind,
            truth,
            alarms,
            run_end=run_end,
            grace_ms=HOUR if kind != "household.group_rental_suspected" else DAY,
            early_ms=DAY if kind == "household.group_rental_suspected" else 5 * 60_000,
            eligible=eligible_for(kind, span),
        )
    elders = await lone_elders(db)
    elder_days = len(elders) * args.days
    le = kinds["household.lone_elder_inactive"]
    # baselines on the same stored data
    water = await water_intervals(db, elders)
    fixed_alarms = [
        AlarmRow("household.lone_elder_inactive", hid, ts)
        for hid, series in water.items()
        for ts in fixed_water_rule(series)
    ]

    def score_elders(rows: Sequence[AlarmRow]) -> KindScore:
        return score_kind(
            "household.lone_elder_inactive",
            truth,
            rows,
            run_end=run_end,
            grace_ms=HOUR,
            early_ms=5 * 60_000,
            eligible=eligible_for("household.lone_elder_inactive", span),
        )

    fixed = score_elders(fixed_alarms)
    power_alarms: dict[str, int] = {}
    f = await load_features(db, first_day + timedelta(days=args.days - 1), args.days)
    for d in range(13, args.days):
        for hid in power_only_group_rental(f, day_index=d):
            power_alarms.setdefault(hid, day_end_ms(first_day + timedelta(days=d)))
    power = score_kind(
        "household.group_rental_suspected",
        truth,
        [AlarmRow("household.group_rental_suspected", h, t) for h, t in power_alarms.items()],
        run_end=run_end,
        grace_ms=DAY,
        early_ms=DAY,
        eligible=eligible_for("household.group_rental_suspected", span),
    )

    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, coalesce(evidence ->> 'device_type', evidence ->> 'basis', evidence ->> 'reason', ''),"
            " count(*) FROM alarms GROUP BY 1, 2 ORDER BY 1, 3 DESC"
        )
        breakdown: dict[str, dict[str, int]] = {}
        for kind, what, n in await cur.fetchall():
            breakdown.setdefault(kind, {})[what or "-"] = n

    def per100(s: KindScore) -> float | None:
        return round(100 * (s.alarms - s.true_alarms) / elder_days, 2) if elder_days else None

    # The same, counting only the days after the first week, when the routine has replaced the fixed
    # rule (`min_days`): what a household sees once the model has learned it.
    learn_days = RuleConfig().params().lone_elder.min_days
    cutoff = span[0] + learn_days * DAY
    learned_days = len(elders) * max(0, args.days - learn_days)

    def per100_learned(rows: Sequence[AlarmRow]) -> float | None:
        s = score_elders([a for a in rows if a.kind == "household.lone_elder_inactive" and a.first_seen >= cutoff])
        return round(100 * (s.alarms - s.true_alarms) / learned_days, 2) if learned_days else None

    return {
        "kinds": {k: v.as_dict() for k, v in kinds.items()},
        "lone_elder": {
            "households": len(elders),
            "elder_days": elder_days,
            "model_false_alerts_per_100_elder_days": per100(le),
            "learn_days": learn_days,
            "model_false_alerts_per_100_elder_days_after_learning": per100_learned(alarms),
            "fixed_rule": fixed.as_dict(),
            "fixed_rule_false_alerts_per_100_elder_days": per100(fixed),
            "fixed_rule_false_alerts_per_100_elder_days_after_learning": per100_learned(fixed_alarms),
        },
        "group_rental_power_only_baseline": power.as_dict(),
        "alarms_by_kind_and_cause": breakdown,
    }


def targets(report: Mapping[str, Any]) -> str:
    """The BRIEF.md targets, as table rows with what was measured."""
    k = report["kinds"]
    le, gr, eb = k["household.lone_elder_inactive"], k["household.group_rental_suspected"], k["ebike.indoor_charging"]
    per100 = report["lone_elder"]["model_false_alerts_per_100_elder_days"]
    rows = [
        ("group rental precision ≥ 0.9", gr["precision"], (gr["precision"] or 0) >= 0.9),
        ("group rental recall ≥ 0.85", gr["recall"], (gr["recall"] or 0) >= 0.85),
        ("lone elder: every incident found", le["recall"], le["recall"] == 1.0),
        ("lone elder: median delay ≤ 4 h", le["median_delay_h"], (le["median_delay_h"] or 99) <= 4),
        ("lone elder: ≤ 1 false alert per 100 elder-days", per100, per100 is not None and per100 <= 1),
        ("e-bike indoor charging precision ≥ 0.95", eb["precision"], (eb["precision"] or 0) >= 0.95),
    ]
    return "\n".join(
        f"| {name} | {fmt(v) if isinstance(v, float) else v} | {'yes' if ok else 'no'} |" for name, v, ok in rows
    )


DOC_MARKER = "<!-- end of the generated report: what follows is kept when it is written again -->"


def write_doc(report: Mapping[str, Any], path: Path, command: str) -> None:
    k = report["kinds"]
    le = report["lone_elder"]
    gr = k["household.group_rental_suspected"]
    base = report["group_rental_power_only_baseline"]
    r = report["run"]
    rows = []
    for kind, s in k.items():
        rows.append(
            f"| `{kind}` | {s['incidents']} | {s['detected']} | {fmt(s['recall'])} | {s['alarms']} | "
            f"{fmt(s['precision'])} | {fmt(s['median_delay_h'])} | {fmt(s['p90_delay_h'])} |"
        )
    fx = le["fixed_rule"]
    learned = le.get("model_false_alerts_per_100_elder_days_after_learning")
    fixed_learned = le.get("fixed_rule_false_alerts_per_100_elder_days_after_learning")

    def row(name: str, s: Mapping[str, Any], per100: Any) -> str:
        return f"| {name} | {fmt(s['recall'])} | {fmt(s['precision'])} | {fmt(s['median_delay_h'])} | {per100} |"

    text = f"""# Internal tuning harness: figures NOT of record

Produced by `scripts/tune_harness.py`, which reaches the models through the side door (the registry
imported before the runtime starts, the daily job called by hand for every day; see its docstring).
The figures of record are the front-door evaluation's, in [../EVALUATION.md](../EVALUATION.md).
Reproduce with

```sh
{command}
```

Run: {r["households"]} households, {r["days"]} simulated days from {r["first_day"]} (local), seed {r["seed"]},
simulator overrides {json.dumps(r.get("params") or {}, ensure_ascii=False)};
{r["messages_published"]:,} MQTT messages carrying {r["readings"]:,} readings, published at QoS 1 through a real
Mosquitto into the collector, the rule engine and the alerts service, stored in PostgreSQL;
{r["declared_absences"]} declared absences. Ingest took {r["ingest_seconds"]} s, the whole run {r["total_seconds"]} s.

## Per alarm kind

Delays are in event time, from the incident's onset to the alarm's first detection. An alarm on a
confounder (a shop, a week's visitors, an elder away, a cleaning day, a nuisance alarm) counts
against precision.

| kind | incidents | found | recall | alarms | precision | median delay h | p90 delay h |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## Against the fixed rules in use today

| detector | recall | precision | median delay h | false alerts per 100 elder-days |
|---|---|---|---|---|
{row("lone elder: this model", k["household.lone_elder_inactive"], le["model_false_alerts_per_100_elder_days"])}
{row("lone elder: < 10 L in 12 h", fx, le["fixed_rule_false_alerts_per_100_elder_days"])}
| group rental: this model | {fmt(gr["recall"])} | {fmt(gr["precision"])} | — | — |
| group rental: electricity only | {fmt(base["recall"])} | {fmt(base["precision"])} | — | — |

{le["households"]} lone-elder households, {le["elder_days"]} elder-days. After the first {le.get("learn_days")} days,
when the routine has replaced the fixed rule, the model raised {learned} false alerts per 100 elder-days
(the 12-hour rule {fixed_learned}). False alarms on confounders
(this model): lone elder {k["household.lone_elder_inactive"]["false_alarms_on_confounders"]}, group rental
{gr["false_alarms_on_confounders"]}, e-bike {k["ebike.indoor_charging"]["false_alarms_on_confounders"]}.

## Against the targets (BRIEF.md)

| target | measured | met |
|---|---|---|
{targets(report)}

## Reading the figures

- **Group rental**: the model's leads are the simulated group rentals, found from their first
  judged day (the window is 14 days, hence the 336 h "delay"); the electricity-only screen in use
  today flags large families and misses rentals whose tenants are out by day. A lead needs more
  people than the registration explains (water or power, against the neighbours) *and* life at
  night on at least 5 of the 14 nights: a shop, a large family, a week's visitors, a cleaning day
  or one night of a running tap are not leads.
- **Lone elder**: the simulator's inactivity rate is raised for the evaluation
  (`scripts/eval_params.json`: 1 per 100 elder-days, each found after 14 h) so that a run holds
  enough incidents for a median. Every inactivity was found, sooner and with about a tenth of the
  false alerts of the 12-hour water rule, but neither the delay nor the false-alert target is
  met. Onsets are uniform over the day: one after the evening's last sign of life looks like
  sleep until the morning (the alarm comes an hour after this person's latest waking of the last
  two weeks), so the nights set the median; in the day the simulated elders often go four or
  five hours without a water draw or a switch, which sets the daytime threshold. The remaining
  false alerts are late mornings and long quiet afternoons beyond the longest of the last two
  weeks, and undeclared trips (`confounder.elder_away`); the first week, under the fixed rule's
  twelve hours, has fewer of them than the weeks after (see the figure after learning above). The
  trade-off between delay and false alerts, setting by setting, is in the operating points
  below (`scripts/elder_operating_points.py`).
- **E-bike charging**: precision at target. A charger under a cycling fridge is found from the
  circuit's floor after about three quarter hours (hence the longer p90 delay); the few charges
  still missed are short ones on such circuits.
- **Smoke**: the simulated alarms are nuisance alarms (cooking, steam), not fires; life safety
  first means each still raises `smoke.fire` at once and is then cleared as `self_cleared`, so
  they count against precision here by design.
- **Continuous flow**: every running tap found; what else raises it is mostly cleaning days
  longer than a lone elder's two hours and busy households in their first days, before their own
  longest spans are learned. The feedback of a `false_alarm` outcome is not yet used by this rule.
- **device.offline**: one to three alarms per run match no outage of the truth, and their number
  varies between runs of the same seed: they come with the collector's MQTT keep-alive timeouts
  under the flat-out backfill (the persistent session redelivers, nothing is lost, but a device's
  readings arrive late). Not yet fixed.

The full figures, including every alarm by kind and cause, are in `docs/tuning/harness_seed7.json`.
"""
    # What follows the marker in the existing file (other seeds, hand-written notes) is kept.
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    tail = old[old.index(DOC_MARKER) :] if DOC_MARKER in old else DOC_MARKER + "\n"
    path.write_text(text + "\n" + tail, encoding="utf-8")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=600)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--first-day", type=date.fromisoformat, default=None, help="local date the span starts (default: days ago)"
    )
    ap.add_argument("--deadline", type=float, default=900.0, help="seconds the pipeline may take to drain")
    ap.add_argument("--nbiot-batch", type=float, default=0.0, help="share of water meters uploading daily batches")
    ap.add_argument("--power-batch", type=float, default=0.0, help="share of power meters shared in daily batches")
    ap.add_argument("--ebike-interval", type=int, default=60, help="e-bike sensors' sampling interval, s")
    ap.add_argument("--malformed-share", type=float, default=0.0)
    ap.add_argument("--connections", type=int, default=1, help="MQTT connections the simulator publishes over")
    ap.add_argument("--ingest-only", action="store_true", help="publish and store; report counts, score nothing")
    ap.add_argument("--params", type=Path, default=None, help="simulator parameter overrides (JSON), as for simulate")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--doc", type=Path, default=None, help="write the Markdown report here (docs/EVALUATION.md)")
    args = ap.parse_args()
    if args.days < 15 and not args.ingest_only:
        ap.error("--days must be at least 15: the group-rental window is 14 days")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = asyncio.run(main(args))
    print(json.dumps(report, indent=1))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1) + "\n")
    if args.doc:
        command = (
            f".venv/bin/python scripts/tune_harness.py --households {args.households} --days {args.days}"
            f" --seed {args.seed}"
            + (f" --first-day {args.first_day}" if args.first_day else "")
            + (f" --params {args.params}" if args.params else "")
            + f" --json-out {args.json_out or 'docs/tuning/harness_seed7.json'} --doc {args.doc}"
        )
        write_doc(report, args.doc, command)


if __name__ == "__main__":
    cli()
