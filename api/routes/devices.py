"""Devices: a registered device with its last known state, a meter's usage, devices nobody registered, and the
retirement of a device (its broker account revoked, its open alarms cleared with the reason)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from alerts import retirement
from api.deps import Allow, Db, DeviceId, Limit, Services
from api.schemas import DeviceRead, DeviceRetired, Reason, UnregisteredDeviceRead, UsageRead
from collectors import queries
from whistle.access import Permission, Principal
from whistle.errors import Invalid, NotFound

router = APIRouter()

Usage = Annotated[Principal, Allow(Permission.DEVICES_USAGE)]


@router.get("/devices/unregistered", response_model=list[UnregisteredDeviceRead])
async def get_unregistered(db: Db, user: Usage, limit: Limit = 100) -> list[UnregisteredDeviceRead]:
    """Devices that keep publishing without being registered, so an operator can register them."""
    return [UnregisteredDeviceRead.model_validate(d) for d in await queries.list_unregistered(db, limit=limit)]


@router.get("/devices/{device_id}/usage", response_model=list[UsageRead])
async def get_usage(
    db: Db,
    user: Usage,
    device_id: DeviceId,
    since: datetime,
    until: datetime | None = None,
    max_gap_s: Annotated[float, Query(gt=0)] = 7200.0,
) -> list[UsageRead]:
    """A water or power meter's consumption per interval: resets never count as negative use."""
    end = until or datetime.now(UTC)
    if since.tzinfo is None or end.tzinfo is None:
        raise Invalid("since and until need a UTC offset")
    if await queries.get_device(db, device_id, scope=user.scope) is None:
        raise NotFound(f"device {device_id} not registered")
    rows = await queries.device_usage(db, device_id, since=since, until=end, max_gap_s=max_gap_s)
    return [UsageRead.model_validate(r) for r in rows]


@router.get("/devices/{device_id}", response_model=DeviceRead)
async def get_device(
    db: Db, user: Annotated[Principal, Allow(Permission.DEVICES_READ)], device_id: DeviceId
) -> DeviceRead:
    row = await queries.get_device(db, device_id, scope=user.scope)
    if row is None:
        raise NotFound(f"device {device_id} not registered")
    return DeviceRead.model_validate(row)


@router.post("/devices/{device_id}/retire", response_model=DeviceRetired)
async def retire_device(
    ctx: Services, user: Annotated[Principal, Allow(Permission.DEVICES_MANAGE)], device_id: DeviceId, body: Reason
) -> DeviceRetired:
    """Retire a device: its messages become dead letters, its broker account is revoked (the password file and
    ACL are rewritten), its open alarms are cleared with the reason."""
    done = await retirement.retire_device(ctx.alerts, device_id, actor=user.id, reason=body.reason)
    await ctx.registry_changed()
    return DeviceRetired(device_id=done.device_id, alarms_cleared=done.alarms_cleared)
