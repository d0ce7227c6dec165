"""The API's routers, one module per resource, combined under /api/v1 here."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    alarms,
    audit,
    buildings,
    dead_letters,
    devices,
    health,
    households,
    jobs,
    live,
    one_tap,
    pipeline,
    registry,
    rosters,
    screen,
    session,
    silences,
    sms_replies,
    stats,
    street_map,
    tickets,
    users,
    worker,
    workers,
)

router = APIRouter(prefix="/api/v1")
for _module in (
    health,
    session,
    users,
    registry,
    alarms,
    tickets,
    rosters,
    silences,
    live,
    dead_letters,
    devices,
    households,
    workers,
    audit,
    jobs,
    pipeline,
):
    router.include_router(_module.router)
for _module in (street_map, buildings, stats, screen):  # the operations-center screens (stats/)
    router.include_router(_module.router)
for _module in (worker, one_tap, sms_replies):  # the grid worker's page, and acknowledging from the message
    router.include_router(_module.router)
