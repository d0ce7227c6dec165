"""How far behind each stage of the pipeline is: records on the bus that a consumer group has not committed.

The rule lanes commit with their snapshots (every few seconds), so a rules lag of a few hundred records
while readings flow is normal; a lag that grows is a stage that cannot keep up (or is down).
"""

from __future__ import annotations

from dataclasses import dataclass

from whistle.bus import TOPIC_DETECTIONS, TOPIC_PRIORITY, TOPIC_READINGS, Bus, TopicPartition
from whistle.store.db import Database

# The consumer groups of the roles (rules: one group per lane, as rules.engine names them).
GROUPS: tuple[tuple[str, str], ...] = (
    ("whistle-rules.whistle.priority", TOPIC_PRIORITY),
    ("whistle-rules.whistle.readings", TOPIC_READINGS),
    ("whistle-alerts", TOPIC_DETECTIONS),
)


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    topic: str
    records: int  # on the topic so far
    lag: int  # of them not yet committed by the group


@dataclass(frozen=True, slots=True)
class PipelineState:
    groups: list[GroupLag]
    dead_letters: int  # refused input (collectors) and refused bus records (poison)

    @property
    def lag(self) -> int:
        return sum(g.lag for g in self.groups)


async def group_lag(bus: Bus, group: str, topic: str) -> GroupLag:
    ends = await bus.end_offsets_async(topic)
    lag = 0
    for p, end in enumerate(ends):
        committed = await bus.committed_async(group, TopicPartition(topic, p))
        lag += max(0, end - (committed or 0))
    return GroupLag(group, topic, sum(ends), lag)


async def pipeline_state(bus: Bus, db: Database) -> PipelineState:
    groups = [await group_lag(bus, g, t) for g, t in GROUPS]
    async with db.connection() as conn:
        cur = await conn.execute("SELECT (SELECT count(*) FROM dead_letters) + (SELECT count(*) FROM bus_dead_letters)")
        row = await cur.fetchone()
    return PipelineState(groups, int(row[0]) if row else 0)
