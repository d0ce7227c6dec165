"""`whistle demo`: everything embedded, a simulated street's history backfilled into it, then its life live.

The show, in order:

1. The street (simulators/district.py, seeded) is imported into the registry, the console prints the
   operations-center screen's link and the grid worker's page link for the on-duty worker of the
   busiest micro-grid (both with a token made for this run).
2. **History**: `--history-days` local days before today are published over MQTT as fast as the
   collector acknowledges them, water and power meters in daily batches as NB-IoT meters and the
   utility's feed deliver them (that is what keeps it inside two minutes: a household-day is 2 messages
   instead of 192). E-bike sensors sample every minute, so only their last `EBIKE_HISTORY_H` hours go
   in. The lone-elder model judges as the history passes; once the collector has acknowledged (so stored)
   every message, the household job is asked to judge the days (`whistle.jobs`, as
   `POST /api/v1/jobs/household-days` does; it reads what is stored), so the group-rental leads appear at
   once rather than after the job's 10-minute quiet rule, while the rule engine works through the rest.
3. **Live**: the same simulation goes on from the present with the wall clock (`--speed 1`), meters
   reporting every 15 minutes, and a smoke drill every `--incident-every` seconds.

The demo's street uses `DEMO_INCIDENTS`: lone-elder inactivity made frequent enough that a street of the
default size has one in its history (real life is far rarer), found by the family after a day.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import chain
from typing import Any

from alerts.rosters import get_roster
from app.console import StatusLine, banner, log_to_file
from app.runtime import ROLES, Runtime, install_signal_handlers, run
from simulators.district import District, build_district
from simulators.live import BackfillProgress, LiveClock, LiveStats, Publisher, backfill, live_start, run_live
from simulators.params import Params
from simulators.stream import SimMessage, Simulation, TrafficOptions
from simulators.timebase import day_start
from whistle import jobs
from whistle.mqtt import MqttEndpoint
from whistle.registry import import_registry, parse_registry
from whistle.settings import Settings
from whistle.timeutil import CHINA_TZ, DAY_MS, HOUR_MS, format_ms, local_day, now_ms
from whistle.users import issue_token

log = logging.getLogger("whistle")

ACTOR = "demo"
EBIKE_HISTORY_H = 6
DEMO_INCIDENTS: dict[str, Any] = {
    # about one inactivity per 80 elder-days: the default street (18 lone elders) has 2-4 in a fortnight
    "lone_elder_inactive_per_elder_day": 0.012,
    "lone_elder_found_after_h": 20.0,
}
GROUP_RENTAL = "household.group_rental_suspected"
LONE_ELDER = "household.lone_elder_inactive"
OPEN_TICKETS = ("dispatched", "acknowledged", "on_site")


@dataclass(frozen=True, slots=True)
class Counts:
    """What the status line shows of the service's state."""

    messages: int
    readings: int
    alarms_open: int
    tickets_open: int
    tickets_closed: int
    group_rental: int
    lone_elder: int


def demo_params() -> Params:
    return Params.from_overrides({"incidents": DEMO_INCIDENTS})


def busiest_grid(district: District) -> str:
    """The micro-grid with the most households (the demo's worker link is for its worker on duty)."""
    doc = district.registry
    grid_of = {b["id"]: b["grid_id"] for b in doc["buildings"]}
    count: dict[str, int] = {}
    for h in doc["households"]:
        g = grid_of.get(h.get("building_id") or "")
        if g:
            count[g] = count.get(g, 0) + 1
    return max(sorted(count), key=lambda g: count[g])


async def worker_on_duty(rt: Runtime, district: District, grid_id: str) -> dict[str, Any] | None:
    """The grid's primary on duty by its roster, else its first grid worker (as routing chooses)."""
    roster = await get_roster(rt.db, grid_id=grid_id, now=now_ms())
    workers: dict[str, dict[str, Any]] = {w["id"]: w for w in district.registry["workers"]}
    if roster.on_duty and roster.on_duty[0] in workers:
        return workers[roster.on_duty[0]]
    mine = sorted(w["id"] for w in workers.values() if w.get("grid_id") == grid_id and w["role"] == "grid_worker")
    return workers[mine[0]] if mine else None


async def counts(rt: Runtime) -> Counts:
    async with rt.db.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM alarms WHERE status <> 'cleared'),"
            " (SELECT count(*) FROM tickets WHERE status = ANY(%s)),"
            " (SELECT count(*) FROM tickets WHERE status <> ALL(%s)),"
            " (SELECT count(*) FROM alarms WHERE kind = %s), (SELECT count(*) FROM alarms WHERE kind = %s)",
            (list(OPEN_TICKETS), list(OPEN_TICKETS), GROUP_RENTAL, LONE_ELDER),
        )
        row = await cur.fetchone()
    assert row is not None
    s = rt.collector.stats if rt.collector is not None else None
    return Counts(s.messages if s else 0, s.readings if s else 0, *(int(x) for x in row))


def status_text(c: Counts, rate: tuple[float, float], progress: BackfillProgress | None, phase: str) -> str:
    """The status line: (messages/s, readings/s), the counts, the backfill's progress while it runs."""
    head = phase
    if progress is not None and not progress.done:
        head = f"backfill {progress.share:4.0%} (street at {format_local(progress.sim_ms or progress.start_ms)})"
    return (
        f"{head} | {rate[0]:,.0f} msg/s, {rate[1]:,.0f} readings/s | alarms open {c.alarms_open}"
        f" | tickets open {c.tickets_open}, closed {c.tickets_closed}"
        f" | 疑似群租 {c.group_rental} · 独居老人 {c.lone_elder}"
    )


async def stored(publisher: Publisher, stop: asyncio.Event, *, timeout_s: float) -> bool:
    """Until the collector acknowledged every message published (it acknowledges after the commit), bounded."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        if publisher.pending == 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return False


def format_local(ms: int) -> str:
    """`MM-DD HH:MM` in Beijing time."""
    return datetime.fromtimestamp(ms / 1000, CHINA_TZ).strftime("%m-%d %H:%M")


def _day(ms: int) -> date:
    return date(1970, 1, 1) + timedelta(days=local_day(ms))


async def run_demo(args: argparse.Namespace) -> int:
    """`whistle demo`: a simulated street's history, then its life, published into the whole system, embedded."""
    # the storm wait is in the street's time, which runs `speed` times faster than the alerts' wall clock
    settings = Settings(demo=True, storm_wait_s=Settings().storm_wait_s / max(args.speed, 1.0))
    if not 0 <= args.history_days <= settings.reading_horizon_days - 2:
        raise ValueError(
            f"--history-days must be between 0 (no history) and {settings.reading_horizon_days - 2:g}: the collector "
            f"refuses readings older than {settings.reading_horizon_days:g} days (WHISTLE_READING_HORIZON_DAYS)"
        )
    log_path = settings.state_dir / "logs" / "demo.log"
    log_to_file(log_path, verbose=args.verbose)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    tasks: list[asyncio.Task[Any]] = []
    publishers: list[Publisher] = []
    status = StatusLine(sys.stdout)

    async def show(rt: Runtime, sim: Simulation, pub: Publisher, live_from: int, progress: BackfillProgress) -> None:
        phase = {"name": "backfill" if progress.until_ms > progress.start_ms else "live"}
        stats = LiveStats()

        async def refresh() -> None:
            last = (time.monotonic(), 0, 0)
            shown = ""
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                try:
                    c = await counts(rt)
                except Exception:  # the database going away at the end: the next look or the stop says so
                    log.debug("status not read", exc_info=True)
                    continue
                t = time.monotonic()
                dt = max(t - last[0], 1e-3)
                rate = ((c.messages - last[1]) / dt, (c.readings - last[2]) / dt)
                last = (t, c.messages, c.readings)
                status.show(status_text(c, rate, progress, phase["name"]), now=phase["name"] != shown)
                shown = phase["name"]

        tasks.append(asyncio.create_task(refresh(), name="demo-status"))
        rest: list[SimMessage] = []
        it = sim.messages()
        if progress.until_ms > progress.start_ms:
            began = time.monotonic()
            ebike_from = live_from - EBIKE_HISTORY_H * HOUR_MS

            def keep(m: SimMessage) -> bool:
                return m.send_ms >= ebike_from or not m.topic.startswith("whistle/v1/ebike/")

            rest = await backfill(it, pub, stop, progress, keep=keep)
            if stop.is_set():
                return
            published_s = time.monotonic() - began
            phase["name"] = "history published, storing"
            settled = await stored(pub, stop, timeout_s=300.0)
            log.info(
                "demo history: %d messages published in %.1f s, %s in %.1f s",
                progress.messages,
                published_s,
                "stored" if settled else "not all stored",
                time.monotonic() - began,
            )
            if stop.is_set():
                return
            phase["name"] = "judging household days"
            first, last = _day(progress.start_ms), _day(live_from) - timedelta(days=1)
            rid = await jobs.request_household_days(rt.db, first=first, last=last, actor=ACTOR)
            done = await jobs.wait_for_request(rt.db, rid, timeout_s=300.0)
            log.info(
                "demo household job: %s %s (%.1f s after the backfill began)",
                done.status,
                done.result,
                time.monotonic() - began,
            )
        phase["name"] = "live"
        # the street's clock: the wall clock from now on (or, at --speed above 1, catching up with it)
        clock = LiveClock(live_from if args.speed > 1 else now_ms(), args.speed)
        await run_live(
            sim,
            pub,
            stop,
            speed=args.speed,
            incident_every_s=args.incident_every,
            clock=clock,
            messages=chain(rest, it),
            stats=stats,
        )

    async def guarded(work: Coroutine[Any, Any, None]) -> None:
        """The street stopping on an error is said on the console; the service goes on running."""
        try:
            await work
        except Exception as exc:
            log.exception("the demo's street stopped")
            status.end()
            print(f"whistle demo: the simulated street stopped: {exc!r} (details in {log_path})", flush=True)

    async def ready(rt: Runtime) -> None:
        district = build_district(args.households, seed=args.seed, params=demo_params())
        counted = await import_registry(rt.db, parse_registry(district.registry))
        assert rt.collector is not None and rt.mqtt_url is not None
        await rt.collector.directory.load()
        log.info("demo district imported: %s", counted)
        now = now_ms()
        # Live from the present (at --speed 1), or from far enough back that at --speed the street reaches
        # the present when the demo ends (or after an hour); the history fills the days before.
        live_from = live_start(now, args.speed, span_real_s=args.duration or 3600.0)
        start = day_start(local_day(live_from)) - args.history_days * DAY_MS if args.history_days else live_from
        options = TrafficOptions(nbiot_share=1.0, power_batch_share=1.0, batch_until_ms=live_from)
        sim = Simulation(district, start_ms=start, end_ms=None, seed=args.seed, options=options)
        log.info("simulated street from %s, live from %s at x%g", format_ms(start), format_ms(live_from), args.speed)
        pub = Publisher(MqttEndpoint.parse(rt.mqtt_url), "whistle-demo-simulator")
        await pub.start()
        publishers.append(pub)
        grid = busiest_grid(district)
        worker = await worker_on_duty(rt, district, grid)
        worker_link = None
        if worker is not None:
            ttl = (args.duration or 12 * 3600.0) + 600.0
            issued = await issue_token(rt.db, worker["id"], actor=ACTOR, ttl_s=ttl, label="whistle demo")
            grid_name = next((g["name"] for g in district.registry["grids"] if g["id"] == grid), grid)
            worker_link = (f"{worker['name']} ({worker['id']}), {grid_name}", issued.token)
        banner(settings, rt.mqtt_url, worker=worker_link, log_path=log_path)
        progress = BackfillProgress(start, live_from)
        tasks.append(asyncio.create_task(guarded(show(rt, sim, pub, live_from, progress)), name="demo-show"))
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)

    async def stopping(rt: Runtime) -> None:
        if tasks:  # they end on `stop`; one waiting for the household job is not waited for long
            _, late = await asyncio.wait(tasks, timeout=10.0)
            for t in late:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for p in publishers:
            await p.stop()
        await asyncio.sleep(1.0)  # let the last messages through the pipeline
        async with rt.db.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) FROM tickets GROUP BY status ORDER BY status")
            rows = await cur.fetchall()
        status.end()
        print("tickets by status: " + (", ".join(f"{s}={n}" for s, n in rows) or "none"), flush=True)

    await run(settings, ROLES, stop, on_ready=ready, on_stopping=stopping)
    return 0
