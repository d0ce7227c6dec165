"""Dependencies of the routes, as `Annotated` aliases: the running services and the caller's identity.

The caller (`CurrentUser`, a `whistle.access.Principal`) is found from a bearer token (the admin
token of WHISTLE_ADMIN_TOKEN, or a user's token) or from the session cookie a browser got from
`POST /api/v1/session`. `Allow(permission)` refuses a role that may not do a thing (403); what is
outside the caller's scope is refused by the query that looks for it (404). Writes are rate-limited
per caller, failed sign-ins per client address.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.channels.relay import LiveRelay
from alerts.service import AlertService
from api.ratelimit import RateLimiter
from api.screen import ScreenOptions
from api.worker import WorkerOptions
from whistle import users
from whistle.access import PRIVILEGED_RATE, Permission, Principal, bootstrap_admin
from whistle.bus import Bus
from whistle.metrics import Sample
from whistle.protocol import DEVICE_ID_PATTERN
from whistle.settings import Settings
from whistle.store.db import Database

SESSION_COOKIE = "whistle_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """The knobs of people and permissions (from Settings; the defaults are the settings' defaults)."""

    token_ttl_s: float = 90 * 86400.0
    session_ttl_s: float = 12 * 3600.0
    cookie_secure: bool = False
    min_password_length: int = 12
    rate_login_per_min: float = 10.0
    rate_write_per_min: float = 120.0
    rate_write_privileged_per_min: float = 1200.0
    max_body_bytes: int = 1024 * 1024
    max_registry_bytes: int = 64 * 1024 * 1024
    registry_chunk_rows: int = 1000
    life_safety_silence_max_s: float = 4 * 3600.0

    @classmethod
    def from_settings(cls, s: Settings) -> AccessConfig:
        return cls(
            token_ttl_s=s.token_ttl_days * 86400.0,
            session_ttl_s=s.session_ttl_hours * 3600.0,
            cookie_secure=s.cookie_secure,
            min_password_length=s.min_password_length,
            rate_login_per_min=s.rate_login_per_min,
            rate_write_per_min=s.rate_write_per_min,
            rate_write_privileged_per_min=s.rate_write_privileged_per_min,
            max_body_bytes=s.max_body_bytes,
            max_registry_bytes=s.max_registry_bytes,
            registry_chunk_rows=s.registry_chunk_rows,
            life_safety_silence_max_s=s.life_safety_silence_max_hours * 3600.0,
        )


@dataclass
class ApiContext:
    """What the routes need from the process that serves them (the app wires it)."""

    db: Database
    alerts: AlertService
    admin_token: str
    bus: Bus | None = None  # registry changes are announced on it, so every role takes them at once
    roles: list[str] = field(default_factory=list)
    registry_changed: Callable[[], Awaitable[None]] = _nothing  # after an import: reload the registry views
    health_details: Callable[[], dict[str, Any]] = dict
    metrics: Callable[[], Iterable[Sample]] = list
    access: AccessConfig = field(default_factory=AccessConfig)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    screen: ScreenOptions = field(default_factory=ScreenOptions)  # the screen's basemap, poll, thresholds
    worker: WorkerOptions = field(default_factory=WorkerOptions)  # the worker page: arrival radius, keys
    relay: LiveRelay | None = None  # live connections announced to the processes that send (across processes)


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def too_many(retry_after: float) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        "too many requests; try again later",
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )


async def authenticate(ctx: ApiContext, *, bearer: str | None, cookie: str | None) -> Principal | None:
    """The caller behind a bearer token or a session cookie, or None."""
    if bearer:
        if secrets.compare_digest(bearer.encode(), ctx.admin_token.encode()):
            return bootstrap_admin()
        return await users.authenticate_token(ctx.db, bearer)
    if cookie:
        return await users.session_principal(ctx.db, cookie)
    return None


def count_failed_sign_in(ctx: ApiContext, request: Request) -> None:
    """A failed attempt takes from the client address's sign-in budget; raises 429 once it is spent."""
    wait = ctx.limiter.take(f"sign-in:{client_address(request)}", per_min=ctx.access.rate_login_per_min)
    if wait is not None:
        raise too_many(wait)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def current_user(
    request: Request,
    ctx: Annotated[ApiContext, Depends(get_context)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller: a bearer token (the admin token, or a user's) or the session cookie; 401 otherwise."""
    bearer = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    cookie = None if bearer else request.cookies.get(SESSION_COOKIE)
    principal = await authenticate(ctx, bearer=bearer, cookie=cookie)
    if principal is None:
        if bearer or cookie:
            count_failed_sign_in(ctx, request)
        detail = "invalid or expired token" if bearer else "missing bearer token or session"
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE_METHODS:
        if cookie and not _same_origin(request):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a session may not be used from another origin")
        per_min = (
            ctx.access.rate_write_privileged_per_min
            if principal.role in PRIVILEGED_RATE
            else ctx.access.rate_write_per_min
        )
        wait = ctx.limiter.take(f"write:{principal.id}", per_min=per_min)
        if wait is not None:
            raise too_many(wait)
    return principal


def requires(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, if their role has `permission` (403 otherwise)."""

    async def allowed(user: Annotated[Principal, Depends(current_user)]) -> Principal:
        if not user.can(permission):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the role {user.role.value} may not do {permission.value}")
        return user

    return allowed


def Allow(permission: Permission) -> DependsParam:
    """`user: Annotated[Principal, Allow(Permission.X)]` — the caller, if their role may do X."""
    dependency: Any = Depends(requires(permission))
    return dependency  # type: ignore[no-any-return]


def get_db(ctx: Annotated[ApiContext, Depends(get_context)]) -> Database:
    return ctx.db


Services = Annotated[ApiContext, Depends(get_context)]
Db = Annotated[Database, Depends(get_db)]
CurrentUser = Annotated[Principal, Depends(current_user)]

Limit = Annotated[int, Query(ge=1, le=1000)]
TicketId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
HouseholdId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
GridId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
UserId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
WorkerId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
BuildingId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
