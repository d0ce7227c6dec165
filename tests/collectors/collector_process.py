"""A collector in a process of its own, for tests that kill it.

python -m tests.collectors.collector_process MQTT_URL DATABASE_URL CLIENT_ID [SHARE_GROUP]
Prints "ready" once subscribed; on SIGTERM stops cleanly and prints its stats as JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from collectors.codecs import Limits
from collectors.service import Collector, standard_lanes
from whistle.bus import MemoryBus
from whistle.mqtt import MqttEndpoint
from whistle.registry import DeviceDirectory
from whistle.store.db import Database


async def main(mqtt_url: str, db_url: str, client_id: str, share_group: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Database(db_url, max_size=4) as db, MemoryBus() as bus:
        lanes = standard_lanes(MqttEndpoint.parse(mqtt_url), client_id=client_id, share_group=share_group, linger_ms=5)
        collector = Collector(
            lanes=lanes, db=db, bus=bus, directory=DeviceDirectory(db), limits=Limits(), batch_size=200
        )
        await collector.start()
        try:
            task = asyncio.create_task(collector.run(stop))
            await asyncio.sleep(0.2)
            print("ready", flush=True)
            await task
        finally:
            await collector.stop()
        s = collector.stats
        print(
            json.dumps(
                {
                    "messages": s.messages,
                    "readings": s.readings,
                    "duplicates": s.duplicates,
                    "bus": sum(bus.end_offsets("whistle.readings")),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
