"""The screens' endpoints at a street-year: a million alarms, their tickets and audit trail, timed over HTTP.

A fresh embedded PostgreSQL is migrated and given the reference street (`build_district(25000)`: 59 grids,
658 buildings, 58,385 devices, 158 workers). A year of alarms ending now is bulk-loaded with COPY, in the
mix below, with a ticket for each (assigned to a worker of its micro-grid, with that worker's own pace,
and the escalation policy `policy_for` freezes), the ticket-alarm links, each device's last state, and
the audit trail of every ticket (dispatched, notify, ack, arrive, resolve, close; INSERT ... SELECT from
the tickets). The alarms of the last hours are still open, with their tickets. Then `whistle run api`
starts as its own process on that database and each endpoint is called `--calls` times in turn
(after `--warmup` calls), one request at a time, and timed from request to the last byte.

    .venv/bin/python scripts/bench_screens.py --alarms 1000000 --json-out docs/bench_screens.json

Numbers go to docs/BENCHMARKS.md ("Screens").
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
import psycopg

from alerts.escalation import policy_for
from app.broker import free_port
from simulators.district import build_district
from whistle.domain import DEFAULT_SEVERITY, AlarmKind, Severity
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres

TOKEN = "bench-screens-token-0123456789"  # noqa: S105 - a throwaway database

# A street-year's alarms by kind (shares of the total). The seed case logged 11,000+ valid smoke alarms a
# year in one street; device.offline, low batteries and elevator e-bikes are the bulk of the rest.
MIX: dict[AlarmKind, float] = {
    AlarmKind.DEVICE_OFFLINE: 0.40,
    AlarmKind.SMOKE_LOW_BATTERY: 0.13,
    AlarmKind.ELEVATOR_EBIKE: 0.10,
    AlarmKind.EBIKE_INDOOR_CHARGING: 0.08,
    AlarmKind.SMOKE_FAULT: 0.07,
    AlarmKind.ELEVATOR_FAULT: 0.06,
    AlarmKind.WATER_CONTINUOUS_FLOW: 0.06,
    AlarmKind.SMOKE_FIRE: 0.05,
    AlarmKind.LONE_ELDER_INACTIVE: 0.02,
    AlarmKind.SMOKE_TAMPER: 0.01,
    AlarmKind.GROUP_RENTAL_SUSPECTED: 0.01,
    AlarmKind.ELEVATOR_TRAPPED: 0.01,
}
ON_BUILDING = {AlarmKind.SMOKE_FIRE, AlarmKind.ELEVATOR_TRAPPED}
ON_HOUSEHOLD = {AlarmKind.LONE_ELDER_INACTIVE, AlarmKind.GROUP_RENTAL_SUSPECTED, AlarmKind.WATER_CONTINUOUS_FLOW}
DEVICE_TYPE = {
    AlarmKind.DEVICE_OFFLINE: None,  # any device
    AlarmKind.SMOKE_LOW_BATTERY: "smoke",
    AlarmKind.SMOKE_FAULT: "smoke",
    AlarmKind.SMOKE_TAMPER: "smoke",
    AlarmKind.ELEVATOR_EBIKE: "elevator",
    AlarmKind.ELEVATOR_FAULT: "elevator",
    AlarmKind.EBIKE_INDOOR_CHARGING: "ebike",
}
# Median seconds to acknowledge, arrive, resolve after arrival, by severity (each worker has a pace around it).
PACE = {
    Severity.CRITICAL: (70, 480, 1500),
    Severity.MAJOR: (400, 1800, 3600),
    Severity.MINOR: (1800, None, 7200),
    Severity.WARNING: (3600, None, 14400),
}
OPEN_HOURS = 3  # alarms detected in the last hours are still open (one per kind and subject)


def ts(dt: datetime) -> str:
    return dt.isoformat()


def csv_rows(rows: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    """COPY text format, in chunks."""
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row))
        buf.write("\n")
        if buf.tell() > 4 << 20:
            yield buf.getvalue().encode()
            buf = io.StringIO()
    yield buf.getvalue().encode()


def generate(reg: dict[str, Any], n: int, now: datetime, seed: int) -> tuple[list[tuple[Any, ...]], ...]:
    """The year's alarms, tickets, links and device states as rows for COPY."""
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    buildings = {b["id"]: b for b in reg["buildings"]}
    households = {h["id"]: h for h in reg["households"]}
    devices = reg["devices"]
    by_type: dict[str | None, list[dict[str, Any]]] = {None: devices}
    for d in devices:
        by_type.setdefault(d["type"], []).append(d)
    contacts = {h["id"] for h in reg["households"] if h.get("contacts")}
    workers: dict[str, list[str]] = {}
    for w in reg["workers"]:
        if w["role"] == "grid_worker":
            workers.setdefault(w["grid_id"], []).append(w["id"])
    pace = {w["id"]: float(rng.lognormal(0.0, 0.45)) for w in reg["workers"]}
    hh_ids = list(households)
    b_ids = list(buildings)
    lone = [h for h in hh_ids if "lone_elder" in households[h]["tags"]]

    kinds = list(MIX)
    picks = rng.choice(len(kinds), size=n, p=np.array([MIX[k] for k in kinds]) / sum(MIX.values()))
    # detection times over the year, more in the evening (local 18-23 h twice as likely)
    year_s = 365 * 86400
    offsets = rng.uniform(0, year_s, size=n * 2)
    local_hour = ((now.timestamp() - year_s + offsets) / 3600 + 8) % 24
    keep = rng.random(offsets.size) < np.where((local_hour >= 18) & (local_hour < 23), 1.0, 0.5)
    offsets = np.sort(rng.choice(offsets[keep], size=n, replace=False))
    start = now - timedelta(seconds=year_s)
    open_since = now - timedelta(hours=OPEN_HOURS)

    policies: dict[tuple[AlarmKind, bool], str] = {}
    alarms: list[tuple[Any, ...]] = []
    tickets: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    open_subjects: set[tuple[str, str]] = set()
    outcomes = ("confirmed", "false_alarm", "duplicate")
    for i in range(n):
        kind = kinds[picks[i]]
        severity = DEFAULT_SEVERITY[kind]
        household = None
        if kind in ON_BUILDING:
            subject_type, subject = "building", rnd.choice(b_ids)
            building = subject
        elif kind in ON_HOUSEHOLD:
            household = rnd.choice(lone if kind is AlarmKind.LONE_ELDER_INACTIVE else hh_ids)
            subject_type, subject = "household", household
            building = households[household]["building_id"]
        else:
            d = rnd.choice(by_type[DEVICE_TYPE[kind]])
            subject_type, subject = "device", d["id"]
            household = d.get("household_id")
            building = d.get("building_id") or households[household]["building_id"]
        grid = buildings[building]["grid_id"]
        detected = start + timedelta(seconds=float(offsets[i]))
        first_seen = detected - timedelta(seconds=rnd.uniform(1, 30))
        is_open = detected >= open_since and rnd.random() < 0.6 and (kind.value, subject) not in open_subjects
        if is_open:
            open_subjects.add((kind.value, subject))
        alarm_id = uuid.UUID(int=rnd.getrandbits(128), version=4)
        ticket_id = uuid.UUID(int=rnd.getrandbits(128), version=4)
        assignee = rnd.choice(workers.get(grid) or [w["id"] for w in reg["workers"] if w["role"] == "grid_worker"])
        p = pace[assignee]
        ack_m, arrive_m, fix_m = PACE[severity]
        ack = detected + timedelta(seconds=float(rng.lognormal(math.log(ack_m * p), 0.6)))
        arrive = (
            ack + timedelta(seconds=float(rng.lognormal(math.log(arrive_m * p), 0.5)))
            if arrive_m and rnd.random() < 0.97
            else None
        )
        resolved = (arrive or ack) + timedelta(seconds=float(rng.lognormal(math.log(fix_m), 0.7)))
        if is_open:  # an open alarm: its ticket is on its way, as far as the clock allows
            status = "dispatched"
            ack = ack if ack < now and rnd.random() < 0.7 else None
            if ack is not None:
                status = "acknowledged"
                arrive = arrive if arrive is not None and arrive < now else None
                status = "on_site" if arrive is not None else status
            else:
                arrive = None
            resolved = None
        else:
            if resolved >= now:
                resolved = now - timedelta(seconds=1)
                ack, arrive = min(ack, resolved), min(arrive, resolved) if arrive else None
            status = "closed" if resolved + timedelta(minutes=30) < now else "resolved"
        cleared = None if is_open else resolved
        outcome = None
        if resolved is not None:
            outcome = outcomes[0] if rnd.random() < 0.7 else outcomes[1] if rnd.random() < 0.85 else outcomes[2]
        has_contact = kind is AlarmKind.LONE_ELDER_INACTIVE and household in contacts
        key = (kind, has_contact)
        if key not in policies:
            policies[key] = json.dumps(policy_for(kind, severity, has_contact=has_contact).to_json())
        alarms.append(
            (
                alarm_id,
                kind.value,
                severity.value,
                "active" if is_open and ack is None else "acknowledged" if is_open else "cleared",
                subject_type,
                subject,
                household,
                building,
                grid,
                ts(first_seen),
                ts(first_seen + timedelta(seconds=rnd.uniform(0, 60))),
                ts(detected),
                ts(cleared) if cleared else None,
                1,
                '{"bench": true}',
            )
        )
        tickets.append(
            (
                ticket_id,
                kind.value,
                severity.value,
                grid,
                assignee,
                status,
                0,
                ts(detected),
                ts(ack) if ack else None,
                ts(arrive) if arrive else None,
                ts(resolved) if resolved else None,
                outcome,
                policies[key],
                ts(detected),
                ts(resolved + timedelta(minutes=30)) if resolved and status == "closed" else None,
                household,
                building,
            )
        )
        links.append((ticket_id, alarm_id))
    states = []
    for d in devices:
        heard = now - timedelta(seconds=rnd.uniform(0, 7200))
        battery = None if d["type"] in ("water", "power", "elevator") else round(rnd.uniform(5, 100), 1)
        states.append((d["id"], ts(heard), rnd.random() > 0.01, battery))
    return alarms, tickets, links, states


ALARM_COLS = (
    "id, kind, severity, status, subject_type, subject_id, household_id, building_id, grid_id, first_seen, "
    "last_seen, detected_at, cleared_at, count, evidence"
)
TICKET_COLS = (
    "id, kind, severity, grid_id, assignee_id, status, escalation_level, created_at, acknowledged_at, arrived_at, "
    "resolved_at, outcome, policy, escalation_base_at, closed_at, household_id, building_id"
)
# The audit trail the alert service writes for such a ticket, derived from its timestamps.
EVENTS_SQL = """
INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note, data)
SELECT t.id, e.at, e.actor, e.action, e.from_status, e.to_status, NULL, e.data
FROM tickets t CROSS JOIN LATERAL (VALUES
    (t.created_at, 'system', 'dispatched', NULL, 'dispatched', jsonb_build_object('assignee_id', t.assignee_id)),
    (t.created_at, 'system', 'notify', NULL, NULL, '{}'::jsonb),
    (t.acknowledged_at, t.assignee_id, 'ack', 'dispatched', 'acknowledged', '{}'::jsonb),
    (t.arrived_at, t.assignee_id, 'arrive', CASE WHEN t.acknowledged_at IS NULL THEN 'dispatched'
                                                 ELSE 'acknowledged' END, 'on_site', '{}'::jsonb),
    (t.resolved_at, t.assignee_id, 'resolve', CASE WHEN t.arrived_at IS NOT NULL THEN 'on_site'
                                                  ELSE 'acknowledged' END, 'resolved',
     jsonb_build_object('outcome', t.outcome)),
    (t.closed_at, 'admin', 'close', 'resolved', 'closed', '{}'::jsonb)
) AS e(at, actor, action, from_status, to_status, data)
WHERE e.at IS NOT NULL
"""


def load(url: str, reg: dict[str, Any], rows: tuple[list[tuple[Any, ...]], ...]) -> dict[str, float]:
    alarms, tickets, links, states = rows
    took: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, table, cols, data in (
            ("alarms", "alarms", ALARM_COLS, alarms),
            ("tickets", "tickets", TICKET_COLS, tickets),
            ("ticket_alarms", "ticket_alarms", "ticket_id, alarm_id", links),
            ("device_state", "device_state", "device_id, last_seen, online, battery_pct", states),
        ):
            t = time.perf_counter()
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for chunk in csv_rows(iter(data)):
                    copy.write(chunk)
            took[name] = time.perf_counter() - t
            print(f"  COPY {len(data):>9,} {name} in {took[name]:.1f} s", flush=True)
        t = time.perf_counter()
        n = conn.execute(EVENTS_SQL).rowcount
        took["ticket_events"] = time.perf_counter() - t
        print(f"  INSERT {n:>7,} ticket_events in {took['ticket_events']:.1f} s", flush=True)
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        took["vacuum_analyze"] = time.perf_counter() - t
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in ("alarms", "tickets", "ticket_events", "devices", "buildings", "grids")
        }
        counts["open_alarms"] = conn.execute("SELECT count(*) FROM alarms WHERE status <> 'cleared'").fetchone()[0]  # type: ignore[index]
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]  # type: ignore[index]
    print(f"  rows: {counts}; database {size}", flush=True)
    took["counts"] = counts  # type: ignore[assignment]
    took["size"] = size  # type: ignore[assignment]
    return took


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def endpoints(url: str, now: datetime) -> list[tuple[str, str, dict[str, str]]]:
    with psycopg.connect(url) as conn:
        busiest = conn.execute(
            "SELECT building_id FROM tickets GROUP BY building_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]  # type: ignore[index]
        ticket = conn.execute("SELECT id FROM tickets ORDER BY created_at DESC LIMIT 1 OFFSET 500").fetchone()[0]  # type: ignore[index]
    quarter = {"since": ts(now - timedelta(days=91)), "until": ts(now)}
    year = {"since": ts(now - timedelta(days=365)), "until": ts(now)}
    return [
        ("map", "/api/v1/map", {}),
        ("map, GCJ-02", "/api/v1/map", {"crs": "gcj02"}),
        ("summary", "/api/v1/stats/summary", {}),
        ("ticker (30)", "/api/v1/stats/ticker", {"limit": "30"}),
        ("trends, 24 h by hour", "/api/v1/stats/trends", {"bucket": "hour"}),
        ("trends, 24 h, smoke.fire", "/api/v1/stats/trends", {"bucket": "hour", "kind": "smoke.fire"}),
        ("trends, 7 d by day", "/api/v1/stats/trends", {"bucket": "day"}),
        ("trends, 365 d by day", "/api/v1/stats/trends", {"bucket": "day", "since": year["since"]}),
        ("grids, a quarter", "/api/v1/stats/grids", quarter),
        ("workers, a quarter", "/api/v1/stats/workers", quarter),
        ("grids, a year", "/api/v1/stats/grids", year),
        ("workers, a year", "/api/v1/stats/workers", year),
        ("grids export .xlsx, a quarter", "/api/v1/stats/grids/export", {**quarter, "format": "xlsx"}),
        ("workers export .csv, a quarter", "/api/v1/stats/workers/export", {**quarter, "format": "csv"}),
        ("building (the busiest)", f"/api/v1/buildings/{busiest}", {}),
        ("ticket audit export .xlsx", f"/api/v1/tickets/{ticket}/history/export", {"format": "xlsx"}),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alarms", type=int, default=1_000_000)
    ap.add_argument("--households", type=int, default=25_000)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the database directory (printed) for EXPLAIN")
    ap.add_argument("--reuse", metavar="CONNINFO", help="time an already loaded database (printed by --keep)")
    args = ap.parse_args()

    state = Path(tempfile.mkdtemp(prefix="whistle-bench-screens-"))
    pg = None if args.reuse else EmbeddedPostgres(state)
    url = args.reuse or pg.start()  # type: ignore[union-attr]
    proc: subprocess.Popen[bytes] | None = None
    loaded: dict[str, Any] = {}
    try:
        import asyncio

        now = datetime.now(UTC)
        if not args.reuse:
            district = build_district(args.households, seed=args.seed)
            reg = district.registry

            async def prepare() -> None:
                async with Database(url, max_size=2) as db:
                    await import_registry(db, parse_registry(reg))

            asyncio.run(prepare())
            t = time.perf_counter()
            rows = generate(reg, args.alarms, now, args.seed)
            print(f"generated {len(rows[0]):,} alarms and tickets in {time.perf_counter() - t:.1f} s", flush=True)
            loaded = load(url, reg, rows)
            del rows
        else:
            with psycopg.connect(url) as conn:
                now = conn.execute("SELECT max(detected_at) FROM alarms").fetchone()[0]  # type: ignore[index]

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_")}
        env.update(
            WHISTLE_DATABASE_URL=url,
            WHISTLE_HTTP=f"127.0.0.1:{port}",
            WHISTLE_ADMIN_TOKEN=TOKEN,
            WHISTLE_STATE_DIR=str(state),
        )
        exe = Path(sys.executable).with_name("whistle")
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [str(exe), "run", "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            while True:
                try:
                    if http.get("/api/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("whistle run api did not start")
                time.sleep(0.2)
            # The first request over whole days rolls up everything finished so far (stats/rollups.py): once.
            cold = {}
            for name, path, params in endpoints(url, now):
                if name in ("grids, a year", "trends, 365 d by day"):
                    t = time.perf_counter()
                    http.get(path, params=params).raise_for_status()
                    cold[name] = round((time.perf_counter() - t) * 1000, 1)
                    print(f"  first call, {name}: {cold[name]:.0f} ms (rolls up what finished so far)", flush=True)
            results = []
            for name, path, params in endpoints(url, now):
                times = []
                size = 0
                for i in range(args.warmup + args.calls):
                    t = time.perf_counter()
                    r = http.get(path, params=params)
                    dt = (time.perf_counter() - t) * 1000
                    if r.status_code != 200:
                        raise SystemExit(f"{name}: HTTP {r.status_code} {r.text[:300]}")
                    size = len(r.content)
                    if i >= args.warmup:
                        times.append(dt)
                row = {
                    "endpoint": name,
                    "path": path,
                    "params": params,
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(percentile(times, 0.95), 1),
                    "max_ms": round(max(times), 1),
                    "bytes": size,
                }
                results.append(row)
                print(
                    f"  {name:<32} p50 {row['p50_ms']:>7.1f} ms  p95 {row['p95_ms']:>7.1f} ms  "
                    f"max {row['max_ms']:>7.1f} ms  {size:>9,} B",
                    flush=True,
                )
        report = {
            "when": now.isoformat(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "alarms": args.alarms,
            "households": args.households,
            "calls": args.calls,
            "load": loaded,
            "first_calls_ms": cold,
            "results": results,
        }
        if args.json_out:
            args.json_out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        worst = max(r["p95_ms"] for r in results)
        print(f"worst p95: {worst:.1f} ms (target < 200 ms)")
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.keep or pg is None:
            print(f"database kept ({url})")
        else:
            pg.stop()
        if pg is not None and not args.keep:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
