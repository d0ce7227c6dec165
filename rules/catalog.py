"""The rules the engine runs, by lane: what each reads and how its state is keyed."""

from __future__ import annotations

from rules.ebike import EbikeState, ebike_charging
from rules.elevator import ElevatorState, elevator_events
from rules.lone_elder import LoneElderState, is_lone_elder, lone_elder_inactive
from rules.offline import OfflineState, offline_seen, offline_timer
from rules.processor import Rule
from rules.smoke import SmokeBattery, SmokeDevice, SmokeIncident, smoke_battery, smoke_device, smoke_fire
from rules.water import FlowState, continuous_flow
from whistle.domain import Channel, DeviceType, Reading
from whistle.protocol import BULK_INPUTS


def by_building(r: Reading) -> str:
    return r.building_id or r.device_id


def by_device(r: Reading) -> str:
    return r.device_id


def by_household(r: Reading) -> str:
    return r.household_id or r.device_id


PRIORITY_RULES: tuple[Rule, ...] = (
    Rule("smoke.fire", frozenset({(DeviceType.SMOKE, Channel.EVENT)}), by_building, SmokeIncident, smoke_fire),
    Rule("smoke.device", frozenset({(DeviceType.SMOKE, Channel.EVENT)}), by_device, SmokeDevice, smoke_device),
    Rule("elevator", frozenset({(DeviceType.ELEVATOR, Channel.EVENT)}), by_device, ElevatorState, elevator_events),
)

BULK_RULES: tuple[Rule, ...] = (
    Rule("smoke.battery", frozenset({(DeviceType.SMOKE, Channel.STATUS)}), by_device, SmokeBattery, smoke_battery),
    Rule(
        "ebike.indoor_charging",
        frozenset({(DeviceType.EBIKE, Channel.DATA), (DeviceType.EBIKE, Channel.EVENT)}),
        by_device,
        EbikeState,
        ebike_charging,
    ),
    Rule("water.continuous_flow", frozenset({(DeviceType.WATER, Channel.DATA)}), by_device, FlowState, continuous_flow),
    Rule("device.offline", BULK_INPUTS, by_device, OfflineState, offline_seen, offline_timer),
    Rule(
        "household.lone_elder_inactive",
        frozenset({(DeviceType.WATER, Channel.DATA), (DeviceType.POWER, Channel.DATA)}),
        by_household,
        LoneElderState,
        lone_elder_inactive,
        when=is_lone_elder,
    ),
)
