"""The rule engine: consumes readings from the bus by consumer group, keeps per-key state, runs rules.

Two lanes, each its own consumer and state: the priority lane (smoke and elevator events)
and the bulk lane (everything else), so a backlog of meter data never delays a fire. Each
lane commits its offsets after the detections of a batch are on the bus (at-least-once;
detections carry stable ids, so the alerts side drops a replayed one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rules.smoke import SmokeIncident, smoke_fire
from whistle.bus import TOPIC_DETECTIONS, TOPIC_PRIORITY, TOPIC_READINGS, Bus, TopicPartition
from whistle.domain import Channel, Detection, DeviceType, Reading
from whistle.serde import decode_reading, encode_detection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rule:
    """A pure rule and how its state is keyed."""

    name: str
    inputs: frozenset[tuple[DeviceType, Channel]]
    key: Callable[[Reading], str]
    new_state: Callable[[], Any]
    evaluate: Callable[[Reading, Any], list[Detection]]


def _building_key(r: Reading) -> str:
    return r.building_id or r.device_id


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        name="smoke.fire",
        inputs=frozenset({(DeviceType.SMOKE, Channel.EVENT)}),
        key=_building_key,
        new_state=SmokeIncident,
        evaluate=smoke_fire,
    ),
)


class RuleSet:
    """Rules indexed by input, with their keyed state."""

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES) -> None:
        self._by_input: dict[tuple[DeviceType, Channel], list[Rule]] = {}
        for rule in rules:
            for inp in rule.inputs:
                self._by_input.setdefault(inp, []).append(rule)
        self.state: dict[tuple[str, str], Any] = {}

    def evaluate(self, r: Reading) -> list[Detection]:
        out: list[Detection] = []
        for rule in self._by_input.get((r.device_type, r.channel), ()):
            k = (rule.name, rule.key(r))
            st = self.state.get(k)
            if st is None:
                st = self.state[k] = rule.new_state()
            out.extend(rule.evaluate(r, st))
        return out


class RuleEngine:
    """Runs the priority and bulk lanes until stopped."""

    def __init__(self, bus: Bus, *, group: str = "whistle-rules", max_records: int = 5000) -> None:
        self.bus = bus
        self.group = group
        self.max_records = max_records
        self.lanes = {TOPIC_PRIORITY: RuleSet(), TOPIC_READINGS: RuleSet()}
        self.evaluated = 0
        self.detections = 0

    async def _lane(self, topic: str, stop: asyncio.Event) -> None:
        rules = self.lanes[topic]
        consumer = self.bus.consumer(self.group, [topic])
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=250, max_records=self.max_records)
                if not batches:
                    continue
                out: list[tuple[bytes, bytes]] = []
                offsets: dict[TopicPartition, int] = {}
                for tp, records in batches.items():
                    for rec in records:
                        for det in rules.evaluate(decode_reading(rec.value)):
                            out.append((det.subject_id.encode(), encode_detection(det)))
                    self.evaluated += len(records)
                    offsets[tp] = records[-1].offset + 1
                if out:
                    await self.bus.send_many(TOPIC_DETECTIONS, out)
                    self.detections += len(out)
                await consumer.commit(offsets)
        finally:
            await consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            for topic in self.lanes:
                tg.create_task(self._lane(topic, stop), name=f"rules:{topic}")
