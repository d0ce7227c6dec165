"""Starting collectors for tests: in this process, or in a process of their own (to kill them)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.codecs import Limits
from collectors.service import Collector, standard_lanes
from tests.conftest import MosquittoBroker
from whistle.bus import MemoryBus
from whistle.mqtt import MqttEndpoint
from whistle.registry import DeviceDirectory
from whistle.store.db import Database

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Running:
    collector: Collector
    task: asyncio.Task[None]
    stop: asyncio.Event
    bus: MemoryBus
    client_id: str


async def start_collector(
    mosquitto: MosquittoBroker,
    db: Database,
    bus: MemoryBus,
    client_id: str,
    batch_size: int = 500,
    source: str | None = None,
) -> Running:
    lanes = standard_lanes(MqttEndpoint.parse(mosquitto.url), client_id=client_id, linger_ms=5)
    collector = Collector(
        lanes=lanes,
        db=db,
        bus=bus,
        directory=DeviceDirectory(db),
        limits=Limits(),
        batch_size=batch_size,
        source=source,
    )
    await collector.start()
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    return Running(collector, task, stop, bus, client_id)


async def stop_collector(r: Running) -> None:
    r.stop.set()
    await asyncio.wait_for(r.task, 10)
    await r.collector.stop()


class CollectorProcess:
    """`tests.collectors.collector_process` as a child process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(
        cls, mqtt_url: str, db_url: str, client_id: str, share_group: str | None = None
    ) -> CollectorProcess:
        args = [mqtt_url, db_url, client_id, *([share_group] if share_group else [])]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.collectors.collector_process",
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"collector process exited with {await proc.wait()} before ready")
                if line.strip() == "ready":
                    return cls(proc)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def terminate(self) -> dict[str, Any]:
        """SIGTERM, wait (bounded), and return the stats it printed."""
        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            out = (await self.proc.stdout.read()).decode()
            code = await self.proc.wait()
        assert code == 0, out
        stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return stats

    async def reap(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
