"""`whistle demo`: everything embedded, a simulated district published live into it, the screen to watch."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from app.console import banner
from app.runtime import ROLES, Runtime, install_signal_handlers, run
from simulators.district import build_district
from simulators.live import Publisher, live_start, run_live
from simulators.stream import Simulation
from whistle.mqtt import MqttEndpoint
from whistle.registry import import_registry, parse_registry
from whistle.settings import Settings
from whistle.timeutil import format_ms, now_ms

log = logging.getLogger("whistle")


async def run_demo(args: argparse.Namespace) -> int:
    """`whistle demo`: a simulated street published into the whole system, embedded."""
    # the storm wait is in the street's time, which runs `speed` times faster than the alerts' wall clock
    settings = Settings(demo=True, storm_wait_s=Settings().storm_wait_s / max(args.speed, 1.0))
    stop = asyncio.Event()
    install_signal_handlers(stop)
    sim_tasks: list[asyncio.Task[Any]] = []
    publishers: list[Publisher] = []

    async def ready(rt: Runtime) -> None:
        district = build_district(args.households, seed=args.seed)
        doc = district.registry
        counts = await import_registry(rt.db, parse_registry(doc))
        assert rt.collector is not None and rt.mqtt_url is not None
        await rt.collector.directory.load()
        log.info("demo district imported: %s", counts)
        # The street starts in the past so that, at --speed, its clock reaches the present when
        # the demo ends (or after an hour), and then follows the wall clock.
        start = live_start(now_ms(), args.speed, span_real_s=args.duration or 3600.0)
        sim = Simulation(district, start_ms=start, end_ms=None, seed=args.seed)
        log.info("simulated street clock starts at %s, x%g", format_ms(start), args.speed)
        pub = Publisher(MqttEndpoint.parse(rt.mqtt_url), "whistle-demo-simulator")
        await pub.start()
        publishers.append(pub)
        sim_tasks.append(
            asyncio.create_task(run_live(sim, pub, stop, speed=args.speed, incident_every_s=args.incident_every))
        )
        banner(settings, rt.mqtt_url)
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)

    async def stopping(rt: Runtime) -> None:
        for t in sim_tasks:
            await t
        for p in publishers:
            await p.stop()
        await asyncio.sleep(1.0)  # let the last messages through the pipeline
        async with rt.db.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) FROM tickets GROUP BY status ORDER BY status")
            rows = await cur.fetchall()
        print("tickets by status: " + (", ".join(f"{s}={n}" for s, n in rows) or "none"), flush=True)

    await run(settings, ROLES, stop, on_ready=ready, on_stopping=stopping)
    return 0
