"""Dependencies of the routes, as `Annotated` aliases: the running services and the caller's identity."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.service import AlertService
from api.screen import ScreenOptions
from whistle.metrics import Sample
from whistle.protocol import DEVICE_ID_PATTERN
from whistle.store.db import Database


async def _nothing() -> None:
    return None


@dataclass
class ApiContext:
    """What the routes need from the process that serves them (the app wires it)."""

    db: Database
    alerts: AlertService
    admin_token: str
    roles: list[str] = field(default_factory=list)
    registry_changed: Callable[[], Awaitable[None]] = _nothing  # after an import: reload the registry views
    health_details: Callable[[], dict[str, Any]] = dict
    metrics: Callable[[], Iterable[Sample]] = list
    screen: ScreenOptions = field(default_factory=ScreenOptions)  # the screen's basemap, poll, thresholds


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False)


def current_user(
    ctx: Annotated[ApiContext, Depends(get_context)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller, identified by bearer token (the admin token in this release)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if not secrets.compare_digest(creds.credentials.encode(), ctx.admin_token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid token", headers={"WWW-Authenticate": "Bearer"})
    return "admin"


def get_db(ctx: Annotated[ApiContext, Depends(get_context)]) -> Database:
    return ctx.db


Services = Annotated[ApiContext, Depends(get_context)]
Db = Annotated[Database, Depends(get_db)]
CurrentUser = Annotated[str, Depends(current_user)]

Limit = Annotated[int, Query(ge=1, le=1000)]
TicketId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
HouseholdId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
GridId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
BuildingId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
