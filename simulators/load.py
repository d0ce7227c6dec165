"""Load mode: a target rate of realistic messages over several connections, from pre-built packets.

Everything that costs Python time happens before the clock starts: the messages are taken
from a `Simulation` of the district (so the mix, the topics and the payloads are the real
ones, with unique seq numbers: nothing is a duplicate the collector would skip), encoded as
MQTT PUBLISH packets with their packet ids, and joined into chunks per connection. The timed
loop only writes chunks when the target count (rate × elapsed time) is ahead of what was
sent, and counts PUBACKs. `rate` 0 means as fast as the broker takes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from simulators.stream import SimMessage
from simulators.wire import WireClient, publish_packet


@dataclass(frozen=True, slots=True)
class Prepared:
    """Chunks of encoded packets per connection, in the order they are to be written."""

    chunks: list[tuple[int, bytes, int]]  # (connection, packets, count)
    messages: int
    payload_bytes: int
    build_s: float


def prepare(messages: Iterator[SimMessage], total: int, clients: list[WireClient], *, chunk: int = 100) -> Prepared:
    """Take `total` messages and encode them for `clients`, round robin by chunk."""
    t0 = time.monotonic()
    taken: list[SimMessage] = []
    for m in messages:
        taken.append(m)
        if len(taken) >= total:
            break
    chunks: list[tuple[int, bytes, int]] = []
    topics: dict[str, bytes] = {}
    payload_bytes = 0
    for k, i in enumerate(range(0, len(taken), chunk)):
        part = taken[i : i + chunk]
        c = k % len(clients)
        client = clients[c]
        ids = client.next_ids(len(part)) if client.qos else [0] * len(part)
        packets = []
        for m, pid in zip(part, ids, strict=True):
            tb = topics.get(m.topic)
            if tb is None:
                tb = topics.setdefault(m.topic, m.topic.encode())
            packets.append(publish_packet(tb, m.payload, client.qos, pid))
            payload_bytes += len(m.payload)
        chunks.append((c, b"".join(packets), len(part)))
    return Prepared(chunks, len(taken), payload_bytes, time.monotonic() - t0)


@dataclass(frozen=True, slots=True)
class LoadReport:
    qos: int
    connections: int
    target_rate: float
    messages: int
    acked: int
    seconds: float  # first write to last PUBACK (QoS 1) or last write (QoS 0)
    send_seconds: float
    cpu_s: float
    payload_bytes: int
    build_s: float

    @property
    def msg_per_s(self) -> float:
        return (self.acked if self.qos else self.messages) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "qos": self.qos,
            "connections": self.connections,
            "target_msg_per_s": self.target_rate,
            "messages": self.messages,
            "acked": self.acked,
            "seconds": round(self.seconds, 3),
            "msg_per_s": round(self.msg_per_s),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_share": round(self.cpu_s / self.seconds, 3) if self.seconds else None,
            "avg_payload_bytes": round(self.payload_bytes / self.messages, 1) if self.messages else None,
            "build_s": round(self.build_s, 2),
        }


def run_load(
    prepared: Prepared,
    clients: list[WireClient],
    *,
    rate: float,
    should_stop: Callable[[], bool] = lambda: False,
    drain_timeout: float = 60.0,
) -> LoadReport:
    """Write the prepared chunks at `rate` messages/s (0: flat out), then wait for the PUBACKs."""
    cpu0 = time.process_time()
    t0 = time.monotonic()
    sent = 0
    for conn, data, count in prepared.chunks:
        if should_stop():
            break
        if rate > 0:
            while sent >= rate * (time.monotonic() - t0):
                time.sleep(0.001)
                for c in clients:
                    if c.qos:
                        c.read_acks(timeout=0.0)
        clients[conn].send_packets(data, count)
        sent += count
    t_sent = time.monotonic()
    for c in clients:
        if c.qos:
            c.drain(timeout=drain_timeout)
    t_end = time.monotonic() if any(c.qos for c in clients) else t_sent
    qos = clients[0].qos if clients else 1
    return LoadReport(
        qos=qos,
        connections=len(clients),
        target_rate=rate,
        messages=sent,
        acked=sum(c.stats.acked for c in clients),
        seconds=t_end - t0,
        send_seconds=t_sent - t0,
        cpu_s=time.process_time() - cpu0,
        payload_bytes=prepared.payload_bytes,
        build_s=prepared.build_s,
    )
