"""Hand-built readings for rule tests."""

from __future__ import annotations

from typing import Any

from rules.config import RuleConfig
from rules.processor import RuleContext
from rules.topology import HouseholdInfo, Topology
from whistle.domain import Channel, DeviceType, Reading

T0 = 1_795_000_000_000  # 2026-11-18T...Z
MIN = 60_000
HOUR = 3_600_000


def reading(
    device: str,
    dtype: DeviceType,
    channel: Channel,
    ts: int,
    values: dict[str, Any],
    *,
    seq: int | None = None,
    household: str | None = None,
    building: str | None = "RJ-B0001",
    grid: str | None = "RJ-G1-M01",
    received_at: int | None = None,
) -> Reading:
    return Reading(
        device,
        dtype,
        channel,
        ts,
        ts + 50 if received_at is None else received_at,
        values,
        seq,
        household,
        building,
        grid,
    )


def ctx(
    clock: int = T0, config: RuleConfig | None = None, topology: Topology | None = None, **over: Any
) -> RuleContext:
    """A context for calling one rule by hand."""
    cfg = config if config is not None else RuleConfig({"rules": over} if over else None)
    return RuleContext(topology, cfg.params(), clock)


def topology(lone_elders: tuple[str, ...] = ()) -> Topology:
    t = Topology()
    for h in lone_elders:
        t.households[h] = HouseholdInfo(1, frozenset({"lone_elder"}))
    t.grid_parent = {"RJ-G1": None, "RJ-G1-M01": "RJ-G1"}
    t.grid_street = {"RJ-G1": "RJ", "RJ-G1-M01": "RJ"}
    return t
