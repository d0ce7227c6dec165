"""Accounts, their secrets and who they are when they call: users, passwords, tokens, sessions.

Named accounts (`admin`, `ops_center`, `screen`, `integration`) are created; the registry's workers
are accounts without creation (their role and grid come from the registry, and an offboarded
worker is no account any more). Every secret is random and shown once: bearer tokens and session
cookies are stored as their sha256 (they carry 256 bits, so a fast hash is enough), passwords with
scrypt (`hashlib.scrypt`, 2^14 × 8, 16 MiB per try). Tokens and sessions expire and can be revoked;
every change is audited (whistle.audit) in the transaction that makes it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle import audit
from whistle.access import ACCOUNT_ROLES, BOOTSTRAP_ADMIN, Principal, Role, Scope, bootstrap_admin
from whistle.errors import Invalid, NotFound, ServiceError
from whistle.store.db import Database

Conn = AsyncConnection[TupleRow]

USER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
TOKEN_PREFIX = "dw_"  # noqa: S105 - a prefix, not a secret
SESSION_PREFIX = "dws_"
MAX_SUBTREE_DEPTH = 16
# Passwords nobody should be allowed to choose, whatever their length.
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password123",
        "123456789012",
        "changeme",
        "changemenow",
        "admin",
        "adminadmin",
        "whistle",
        "qwertyuiop",
        "1234567890",
        "iloveyou",
        "letmein",
        "welcome",
        "passw0rd",
        "whistle-admin",
    }
)


class AccountError(ServiceError):
    """An account change that cannot be made (a conflict unless marked otherwise)."""


@dataclass(frozen=True, slots=True)
class User:
    """An account as an admin sees it: a named account or a registry worker."""

    id: str
    name: str
    role: Role
    grid_id: str | None
    kind: str  # "account" (created) or "worker" (from the registry)
    active: bool
    has_password: bool
    active_tokens: int


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new bearer token: the only time its value is seen."""

    token: str
    user_id: str
    expires_at: datetime


def digest(secret: str) -> str:
    """The stored form of a random secret (token, session cookie): hex sha256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


# -- passwords ---------------------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64) of a password."""
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_LEN, maxmem=64 * 1024**2
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` string (constant time in the comparison)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024**2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH = hash_password("not a password of anyone", salt=b"\0" * 16)


def check_password_strength(password: str, *, min_length: int) -> None:
    """Refuse a short or common password (Invalid, saying why)."""
    if len(password) < min_length:
        raise Invalid(f"a password needs at least {min_length} characters")
    if len(password) > 256:
        raise Invalid("a password has at most 256 characters")
    letters = re.sub(r"[^a-z]", "", password.lower())
    if password.lower() in COMMON_PASSWORDS or letters in COMMON_PASSWORDS or len(set(password)) < 4:
        raise Invalid("this password is too easy to guess")


# -- who a user is -----------------------------------------------------------------------------


async def subtree(conn: Conn, grid_id: str) -> tuple[str, ...]:
    """A grid and every grid below it (through `grids.parent_id`), bounded in depth."""
    cur = await conn.execute(
        "WITH RECURSIVE down(id, depth) AS ("
        " SELECT id, 0 FROM grids WHERE id = %s"
        " UNION SELECT g.id, down.depth + 1 FROM grids g JOIN down ON g.parent_id = down.id"
        " WHERE down.depth < %s) SELECT DISTINCT id FROM down ORDER BY id",
        (grid_id, MAX_SUBTREE_DEPTH),
    )
    return tuple(r[0] for r in await cur.fetchall())


async def scope_for(conn: Conn, *, user_id: str, role: Role, grid_id: str | None) -> Scope:
    """The scope of an account (see whistle.access)."""
    if role is Role.ADMIN:
        return Scope.everything()
    if role in ACCOUNT_ROLES:
        return Scope.everything() if grid_id is None else Scope(False, await subtree(conn, grid_id))
    if grid_id is None:
        return Scope(role is Role.STREET_CENTER, (), user_id)
    return Scope(False, await subtree(conn, grid_id), user_id)


async def principal_of(conn: Conn, user_id: str, *, via: str) -> Principal | None:
    """The caller behind an active account (named, or a registry worker not offboarded), or None."""
    cur = await conn.execute(
        "SELECT name, role, grid_id FROM users WHERE id = %s AND disabled_at IS NULL "
        "UNION ALL SELECT name, role, grid_id FROM workers WHERE id = %s AND retired_at IS NULL LIMIT 1",
        (user_id, user_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    role = Role(row[1])
    scope = await scope_for(conn, user_id=user_id, role=role, grid_id=row[2])
    return Principal(user_id, role, row[0], row[2], scope, via=via)


async def _require_account(conn: Conn, user_id: str) -> None:
    cur = await conn.execute(
        "SELECT 1 FROM users WHERE id = %s AND disabled_at IS NULL "
        "UNION ALL SELECT 1 FROM workers WHERE id = %s AND retired_at IS NULL",
        (user_id, user_id),
    )
    if await cur.fetchone() is None:
        raise NotFound(f"no active account {user_id}")


# -- accounts ----------------------------------------------------------------------------------


async def add_user(db: Database, *, user_id: str, name: str, role: Role, grid_id: str | None, actor: str) -> User:
    """Create a named account (`admin`, `ops_center`, `screen`, `integration`); workers come from the registry."""
    if not USER_ID.match(user_id):
        raise Invalid("a user id is 1-64 characters of A-Z a-z 0-9 _ -")
    if user_id == BOOTSTRAP_ADMIN:
        raise Invalid(f"{BOOTSTRAP_ADMIN!r} is the identity of WHISTLE_ADMIN_TOKEN; choose another id")
    if role not in ACCOUNT_ROLES:
        roles = ", ".join(sorted(ACCOUNT_ROLES))
        raise Invalid(f"named accounts have one of the roles {roles}; workers come from the registry")
    if not name.strip() or len(name) > 100:
        raise Invalid("a name has 1-100 characters")
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM workers WHERE id = %s UNION ALL SELECT 1 FROM users WHERE id = %s", (user_id, user_id)
        )
        if await cur.fetchone() is not None:
            raise AccountError(f"an account {user_id} exists already (a user or a registry worker)")
        if grid_id is not None:
            cur = await conn.execute("SELECT 1 FROM grids WHERE id = %s", (grid_id,))
            if await cur.fetchone() is None:
                raise Invalid(f"grid {grid_id} not found")
        await conn.execute(
            "INSERT INTO users (id, name, role, grid_id, created_by) VALUES (%s, %s, %s, %s, %s)",
            (user_id, name, role.value, grid_id, actor),
        )
        await audit.record(
            conn,
            actor=actor,
            action="user.create",
            target_type="user",
            target_id=user_id,
            data={"role": role.value, "grid_id": grid_id},
        )
    return User(user_id, name, role, grid_id, "account", True, False, 0)


_USERS_SQL = (
    "SELECT a.id, a.name, a.role, a.grid_id, a.kind, a.active, p.user_id IS NOT NULL, "
    "(SELECT count(*) FROM api_tokens t WHERE t.user_id = a.id AND t.revoked_at IS NULL AND t.expires_at > now()) "
    "FROM (SELECT id, name, role, grid_id, 'account' AS kind, disabled_at IS NULL AS active FROM users "
    "      UNION ALL SELECT id, name, role, grid_id, 'worker', retired_at IS NULL FROM workers) a "
    "LEFT JOIN passwords p ON p.user_id = a.id"
)


def _user(row: Sequence[object]) -> User:
    grid = row[3]
    return User(
        str(row[0]),
        str(row[1]),
        Role(str(row[2])),
        str(grid) if grid is not None else None,
        str(row[4]),
        bool(row[5]),
        bool(row[6]),
        int(str(row[7])),
    )


async def list_users(db: Database, *, limit: int = 1000, after: str | None = None) -> list[User]:
    """Named accounts and registry workers, by id."""
    async with db.connection() as conn:
        cur = await conn.execute(
            f"SELECT * FROM ({_USERS_SQL}) u WHERE %s::text IS NULL OR u.id > %s ORDER BY u.id LIMIT %s",
            (after, after, limit),
        )
        return [_user(r) for r in await cur.fetchall()]


async def get_user(db: Database, user_id: str) -> User:
    async with db.connection() as conn:
        cur = await conn.execute(f"SELECT * FROM ({_USERS_SQL}) u WHERE u.id = %s", (user_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no account {user_id}")
    return _user(row)


async def disable_user(db: Database, user_id: str, *, actor: str) -> None:
    """Disable a named account: it cannot sign in, its tokens and sessions are revoked."""
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE users SET disabled_at = now() WHERE id = %s AND disabled_at IS NULL RETURNING id", (user_id,)
        )
        if await cur.fetchone() is None:
            raise NotFound(f"no active named account {user_id} (workers are offboarded through the registry)")
        await revoke_all(conn, user_id)
        await audit.record(conn, actor=actor, action="user.disable", target_type="user", target_id=user_id)


# -- tokens, passwords, sessions ---------------------------------------------------------------


async def issue_token(db: Database, user_id: str, *, actor: str, ttl_s: float, label: str = "") -> IssuedToken:
    """A new bearer token for an active account, valid for `ttl_s`; only its hash is kept."""
    token = new_secret(TOKEN_PREFIX)
    async with db.connection() as conn, conn.transaction():
        await _require_account(conn, user_id)
        cur = await conn.execute(
            "INSERT INTO api_tokens (user_id, token_hash, label, created_by, expires_at) "
            "VALUES (%s, %s, %s, %s, now() + %s) RETURNING id, expires_at",
            (user_id, digest(token), label[:100], actor, timedelta(seconds=ttl_s)),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            actor=actor,
            action="token.issue",
            target_type="user",
            target_id=user_id,
            data={"token_id": row[0], "expires_at": row[1].isoformat(), "label": label[:100]},
        )
    return IssuedToken(token, user_id, row[1])


async def revoke_all(conn: Conn, user_id: str) -> int:
    """Revoke an account's tokens and sessions (on the caller's connection); how many tokens were live."""
    cur = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
    )
    await conn.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (user_id,))
    return cur.rowcount


async def revoke_tokens(db: Database, user_id: str, *, actor: str) -> int:
    """Revoke every token and session of an account; returns the number of tokens revoked."""
    async with db.connection() as conn, conn.transaction():
        if user_id != BOOTSTRAP_ADMIN:
            cur = await conn.execute(
                "SELECT 1 FROM users WHERE id = %s UNION ALL SELECT 1 FROM workers WHERE id = %s", (user_id, user_id)
            )
            if await cur.fetchone() is None:
                raise NotFound(f"no account {user_id}")
        n = await revoke_all(conn, user_id)
        await audit.record(
            conn, actor=actor, action="token.revoke", target_type="user", target_id=user_id, data={"tokens": n}
        )
    return n


async def set_password(db: Database, user_id: str, password: str, *, actor: str, min_length: int) -> None:
    """Set or reset an account's password (an admin does it); its sessions end."""
    check_password_strength(password, min_length=min_length)
    hashed = await asyncio.to_thread(hash_password, password)
    async with db.connection() as conn, conn.transaction():
        await _require_account(conn, user_id)
        cur = await conn.execute(
            "INSERT INTO passwords (user_id, hash, set_by) VALUES (%s, %s, %s) ON CONFLICT (user_id) "
            "DO UPDATE SET hash = EXCLUDED.hash, set_by = EXCLUDED.set_by, set_at = now() RETURNING (xmax <> 0)",
            (user_id, hashed, actor),
        )
        row = await cur.fetchone()
        await conn.execute(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
        )
        action = "password.reset" if row and row[0] else "password.set"
        await audit.record(conn, actor=actor, action=action, target_type="user", target_id=user_id)


async def authenticate_token(db: Database, token: str) -> Principal | None:
    """The caller behind a bearer token that is live (not expired, not revoked, its account active)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT user_id FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL AND expires_at > now()",
            (digest(token),),
        )
        row = await cur.fetchone()
        return await principal_of(conn, row[0], via="token") if row else None


async def authenticate_password(db: Database, user_id: str, password: str) -> Principal | None:
    """The caller behind a user id and password, or None (as slow for an unknown user as for a known one)."""
    async with db.connection() as conn:
        cur = await conn.execute("SELECT hash FROM passwords WHERE user_id = %s", (user_id,))
        row = await cur.fetchone()
    ok = await asyncio.to_thread(verify_password, password[:256], row[0] if row else _DUMMY_HASH)
    if not ok or row is None:
        return None
    async with db.connection() as conn:
        return await principal_of(conn, user_id, via="password")


async def open_session(db: Database, principal: Principal, *, ttl_s: float) -> str:
    """A new browser session for a signed-in caller; returns the cookie value (only its hash is kept)."""
    value = new_secret(SESSION_PREFIX)
    via = "password" if principal.via == "password" else "token"
    async with db.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO sessions (session_hash, user_id, via, expires_at) VALUES (%s, %s, %s, now() + %s)",
            (digest(value), principal.id, via, timedelta(seconds=ttl_s)),
        )
        await audit.record(
            conn,
            actor=principal.id,
            action="session.open",
            target_type="user",
            target_id=principal.id,
            data={"via": via},
        )
    return value


async def session_principal(db: Database, value: str) -> Principal | None:
    """The caller behind a live session cookie, or None."""
    if not value.startswith(SESSION_PREFIX) or len(value) > 200:
        return None
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT user_id FROM sessions WHERE session_hash = %s AND revoked_at IS NULL AND expires_at > now()",
            (digest(value),),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        if row[0] == BOOTSTRAP_ADMIN:
            return bootstrap_admin()
        return await principal_of(conn, row[0], via="session")


async def close_session(db: Database, value: str) -> None:
    """End a session (signing out); unknown values are ignored."""
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE sessions SET revoked_at = now() WHERE session_hash = %s AND revoked_at IS NULL", (digest(value),)
        )


async def record_sign_in(db: Database, *, user_id: str, ok: bool, via: str, client: str | None) -> None:
    """Audit a sign-in attempt (successful or not)."""
    async with db.connection() as conn:
        await audit.record(
            conn,
            actor=user_id if ok else "anonymous",
            action="sign_in.ok" if ok else "sign_in.failed",
            target_type="user",
            target_id=user_id,
            data={"via": via, "client": client},
        )
