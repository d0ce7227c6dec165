"""Accounts, for admins: named accounts created (registry workers need no creation), listed, disabled; tokens
issued (shown once) and revoked; passwords set and reset. Every change is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from api.deps import Allow, Db, Limit, Services, UserId
from api.schemas import PasswordSet, TokenCreate, TokenIssued, TokensRevoked, UserCreate, UserRead
from whistle import users
from whistle.access import Permission, Principal

router = APIRouter()

Admin = Annotated[Principal, Allow(Permission.USERS_MANAGE)]


@router.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED)
async def post_user(db: Db, user: Admin, body: UserCreate) -> UserRead:
    """Create a named account (`admin`, `ops_center`, `screen`, `integration`; a grid limits its scope)."""
    made = await users.add_user(
        db, user_id=body.id, name=body.name, role=body.role, grid_id=body.grid_id, actor=user.id
    )
    return UserRead.model_validate(made)


@router.get("/users", response_model=list[UserRead])
async def get_users(db: Db, user: Admin, limit: Limit = 1000, after: str | None = None) -> list[UserRead]:
    """Named accounts and registry workers, by id."""
    return [UserRead.model_validate(u) for u in await users.list_users(db, limit=limit, after=after)]


@router.get("/users/{user_id}", response_model=UserRead)
async def get_user(db: Db, user: Admin, user_id: UserId) -> UserRead:
    return UserRead.model_validate(await users.get_user(db, user_id))


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(db: Db, user: Admin, user_id: UserId) -> None:
    """Disable a named account (it stays on record; its tokens and sessions are revoked)."""
    await users.disable_user(db, user_id, actor=user.id)


@router.post("/users/{user_id}/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED)
async def post_token(ctx: Services, user: Admin, user_id: UserId, body: TokenCreate | None = None) -> TokenIssued:
    """A new bearer token for an account; its value is in this answer only."""
    ttl_s = body.ttl_days * 86400.0 if body and body.ttl_days else ctx.access.token_ttl_s
    issued = await users.issue_token(ctx.db, user_id, actor=user.id, ttl_s=ttl_s, label=body.label if body else "")
    return TokenIssued(token=issued.token, user_id=issued.user_id, expires_at=issued.expires_at)


@router.delete("/users/{user_id}/tokens", response_model=TokensRevoked)
async def delete_tokens(db: Db, user: Admin, user_id: UserId) -> TokensRevoked:
    """Revoke every token and session of an account."""
    return TokensRevoked(user_id=user_id, revoked=await users.revoke_tokens(db, user_id, actor=user.id))


@router.put("/users/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT)
async def put_password(ctx: Services, user: Admin, user_id: UserId, body: PasswordSet) -> None:
    """Set or reset an account's password (the account's sessions end)."""
    await users.set_password(ctx.db, user_id, body.password, actor=user.id, min_length=ctx.access.min_password_length)
