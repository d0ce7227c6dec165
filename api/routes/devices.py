"""Devices: a registered device with its last known state, a meter's usage, and devices nobody registered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentUser, Db, DeviceId, Limit
from api.schemas import DeviceRead, UnregisteredDeviceRead, UsageRead
from collectors import queries
from whistle.errors import Invalid, NotFound

router = APIRouter()


@router.get("/devices/unregistered", response_model=list[UnregisteredDeviceRead])
async def get_unregistered(db: Db, user: CurrentUser, limit: Limit = 100) -> list[UnregisteredDeviceRead]:
    """Devices that keep publishing without being registered, so an operator can register them."""
    return [UnregisteredDeviceRead.model_validate(d) for d in await queries.list_unregistered(db, limit=limit)]


@router.get("/devices/{device_id}/usage", response_model=list[UsageRead])
async def get_usage(
    db: Db,
    user: CurrentUser,
    device_id: DeviceId,
    since: datetime,
    until: datetime | None = None,
    max_gap_s: Annotated[float, Query(gt=0)] = 7200.0,
) -> list[UsageRead]:
    """A water or power meter's consumption per interval: resets never count as negative use."""
    end = until or datetime.now(UTC)
    if since.tzinfo is None or end.tzinfo is None:
        raise Invalid("since and until need a UTC offset")
    rows = await queries.device_usage(db, device_id, since=since, until=end, max_gap_s=max_gap_s)
    return [UsageRead.model_validate(r) for r in rows]


@router.get("/devices/{device_id}", response_model=DeviceRead)
async def get_device(db: Db, user: CurrentUser, device_id: DeviceId) -> DeviceRead:
    row = await queries.get_device(db, device_id)
    if row is None:
        raise NotFound(f"device {device_id} not registered")
    return DeviceRead.model_validate(row)
