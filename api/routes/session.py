"""Signing in from a web page: a token or a user id and password become an HttpOnly, SameSite=Strict session
cookie (`POST /session`), `DELETE /session` signs out, `GET /me` says who the caller is and what they may do.

The pages (the operations-center screen, the grid worker's page) use these and never keep a token in the URL
(`#token=` is for `whistle demo`'s printed link only). Sign-in attempts are rate-limited per client address and
every attempt is audited."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from api.deps import SESSION_COOKIE, CurrentUser, Services, authenticate, client_address, count_failed_sign_in
from api.schemas import MeRead, ScopeRead, SessionCreate
from whistle import users
from whistle.access import ROLE_PERMISSIONS, Principal

router = APIRouter()


def me_of(user: Principal) -> MeRead:
    return MeRead(
        id=user.id,
        name=user.name,
        role=user.role.value,
        grid_id=user.grid_id,
        scope=ScopeRead(all_grids=user.scope.all_grids, grid_ids=list(user.scope.grid_ids)),
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[user.role]),
        via=user.via,
    )


@router.post("/session", response_model=MeRead)
async def sign_in(ctx: Services, body: SessionCreate, request: Request, response: Response) -> MeRead:
    """Sign in with `{"token": ...}` or `{"user": ..., "password": ...}`; the answer sets the session cookie."""
    wait = ctx.limiter.take(f"sign-in-try:{client_address(request)}", per_min=ctx.access.rate_login_per_min * 3)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many sign-in attempts",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    if body.token is not None:
        who, via = "token", "token"
        caller = await authenticate(ctx, bearer=body.token, cookie=None)
    else:
        assert body.user is not None and body.password is not None
        who, via = body.user, "password"
        per_user = ctx.limiter.take(f"sign-in-user:{body.user}", per_min=ctx.access.rate_login_per_min)
        if per_user is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many sign-in attempts for this user",
                headers={"Retry-After": str(max(1, round(per_user)))},
            )
        caller = await users.authenticate_password(ctx.db, body.user, body.password)
    await users.record_sign_in(
        ctx.db, user_id=caller.id if caller else who, ok=caller is not None, via=via, client=client_address(request)
    )
    if caller is None:
        count_failed_sign_in(ctx, request)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong token, user or password")
    value = await users.open_session(ctx.db, caller, ttl_s=ctx.access.session_ttl_s)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(ctx.access.session_ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.access.cookie_secure or request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    return me_of(caller)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(ctx: Services, request: Request, response: Response) -> None:
    """End this browser's session (the cookie is cleared; the session cannot be used again)."""
    value = request.cookies.get(SESSION_COOKIE)
    if value:
        await users.close_session(ctx.db, value)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


@router.get("/me", response_model=MeRead)
async def me(user: CurrentUser) -> MeRead:
    """Who the caller is: id, name, role, grid, scope and the permissions of the role."""
    return me_of(user)
