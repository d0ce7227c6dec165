"""Dependencies of the routes: the running context and the caller's identity."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.service import AlertService
from whistle.metrics import Sample
from whistle.registry import DeviceDirectory
from whistle.store.db import Database


@dataclass
class ApiContext:
    """What the routes need from the process that serves them."""

    db: Database
    alerts: AlertService
    admin_token: str
    roles: list[str] = field(default_factory=list)
    directory: DeviceDirectory | None = None
    health_details: Callable[[], dict[str, Any]] = dict
    metrics: Callable[[], Iterable[Sample]] = list


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


Ctx = Annotated[ApiContext, Depends(get_context)]
CurrentUser = Annotated[str, Depends(current_user)]
