"""The device protocol's vocabulary (CONTRACT.md §1), in one place: topics, ids, channels per type, events.

The collectors validate against it, the rules read it, the simulators speak it.
"""

from __future__ import annotations

import re

from whistle.domain import Channel, DeviceType

TOPIC_PREFIX = "whistle/v1/"
DEVICE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
DEVICE_ID_PATTERN = DEVICE_ID.pattern

# Every (type, channel) of the device protocol.
PROTOCOL: frozenset[tuple[DeviceType, Channel]] = frozenset(
    {
        (DeviceType.SMOKE, Channel.EVENT),
        (DeviceType.SMOKE, Channel.STATUS),
        (DeviceType.ELEVATOR, Channel.EVENT),
        (DeviceType.ELEVATOR, Channel.DATA),
        (DeviceType.ELEVATOR, Channel.STATUS),
        (DeviceType.EBIKE, Channel.DATA),
        (DeviceType.EBIKE, Channel.EVENT),
        (DeviceType.EBIKE, Channel.STATUS),
        (DeviceType.WATER, Channel.DATA),
        (DeviceType.WATER, Channel.STATUS),
        (DeviceType.POWER, Channel.DATA),
        (DeviceType.POWER, Channel.STATUS),
    }
)
# Life safety: smoke and elevator events travel on their own lane end to end.
LIFE_SAFETY_TYPES: frozenset[DeviceType] = frozenset({DeviceType.SMOKE, DeviceType.ELEVATOR})
PRIORITY_INPUTS: frozenset[tuple[DeviceType, Channel]] = frozenset((t, Channel.EVENT) for t in LIFE_SAFETY_TYPES)
BULK_INPUTS: frozenset[tuple[DeviceType, Channel]] = PROTOCOL - PRIORITY_INPUTS

SMOKE_EVENTS = (
    "alarm",
    "alarm_clear",
    "fault",
    "fault_clear",
    "low_battery",
    "tamper",
    "tamper_clear",
    "mute",
    "test",
)
# The elevator events that are faults (GB/T 24476-style): each raises elevator.fault.
ELEVATOR_FAULT_EVENTS = frozenset(
    {
        "door_open_while_moving",
        "overspeed",
        "stop_outside_door_zone",
        "top_overrun",
        "bottom_overrun",
        "power_loss",
        "fault",
    }
)
ELEVATOR_EVENTS = (
    "trapped",
    "door_open_while_moving",
    "overspeed",
    "stop_outside_door_zone",
    "top_overrun",
    "bottom_overrun",
    "power_loss",
    "fault",
    "recovered",
    "ebike_detected",
)
EBIKE_EVENTS = ("charging_detected", "charging_stopped")


def device_topic(device_type: str, device_id: str, channel: str) -> str:
    """`whistle/v1/{type}/{device_id}/{channel}`."""
    return f"{TOPIC_PREFIX}{device_type}/{device_id}/{channel}"
