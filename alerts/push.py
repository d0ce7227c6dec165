"""A worker's Web Push subscriptions: stored when their page subscribes, read by the outbox for each notification,
forgotten when the push service says they are gone (404/410) or the worker unsubscribes.

The browser's `PushSubscription.toJSON()` (endpoint and keys) is all that is kept; the keys are checked
to be what RFC 8291 needs (a P-256 point, a 16-octet secret) so a bad subscription is refused at the
door, not at the first fire. A worker keeps at most `MAX_PER_USER` browsers; the oldest goes first.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from alerts.channels.base import PushSubscription
from alerts.channels.webpush import b64url_decode
from alerts.store import Conn
from whistle import audit
from whistle.errors import Invalid
from whistle.store.db import Database

MAX_PER_USER = 5
MAX_ENDPOINT = 1000


def checked(data: Mapping[str, object]) -> PushSubscription:
    """The subscription a browser sent, or Invalid saying what is wrong with it."""
    try:
        sub = PushSubscription.from_json(data)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    parts = urlsplit(sub.endpoint)
    if parts.scheme not in ("https", "http") or not parts.netloc or len(sub.endpoint) > MAX_ENDPOINT:
        raise Invalid("a push endpoint is an http(s) URL of at most 1000 characters")
    try:
        p256dh, auth = b64url_decode(sub.p256dh), b64url_decode(sub.auth)
    except (ValueError, binascii.Error) as exc:
        raise Invalid("the subscription's keys are not base64url") from exc
    if len(p256dh) != 65 or p256dh[0] != 4 or len(auth) != 16:
        raise Invalid("keys.p256dh must be a P-256 point (65 octets) and keys.auth 16 octets")
    return sub


async def subscribe(db: Database, user_id: str, sub: PushSubscription, *, user_agent: str = "") -> bool:
    """Keep a browser's subscription for the user (a known endpoint moves to them); True if it is new."""
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, user_agent) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh, "
            "auth = EXCLUDED.auth, user_agent = EXCLUDED.user_agent RETURNING (xmax = 0)",
            (sub.endpoint, user_id, sub.p256dh, sub.auth, user_agent[:200]),
        )
        row = await cur.fetchone()
        await conn.execute(
            "DELETE FROM push_subscriptions WHERE user_id = %s AND endpoint NOT IN ("
            " SELECT endpoint FROM push_subscriptions WHERE user_id = %s ORDER BY created_at DESC LIMIT %s)",
            (user_id, user_id, MAX_PER_USER),
        )
        created = bool(row and row[0])
        await audit.record(
            conn,
            actor=user_id,
            action="push.subscribe",
            target_type="user",
            target_id=user_id,
            data={"origin": f"{urlsplit(sub.endpoint).scheme}://{urlsplit(sub.endpoint).netloc}", "new": created},
        )
    return created


async def unsubscribe(db: Database, user_id: str, endpoint: str) -> bool:
    """Forget one of the user's subscriptions; True if there was one."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM push_subscriptions WHERE user_id = %s AND endpoint = %s", (user_id, endpoint)
        )
        return cur.rowcount > 0


async def subscriptions_of(conn: Conn, user_ids: Sequence[str]) -> dict[str, tuple[PushSubscription, ...]]:
    """Each user's subscriptions, newest first."""
    if not user_ids:
        return {}
    cur = await conn.execute(
        "SELECT user_id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = ANY(%s) "
        "ORDER BY created_at DESC",
        (list(user_ids),),
    )
    out: dict[str, list[PushSubscription]] = {}
    for user_id, endpoint, p256dh, auth in await cur.fetchall():
        out.setdefault(user_id, []).append(PushSubscription(endpoint, p256dh, auth))
    return {k: tuple(v) for k, v in out.items()}


async def forget(conn: Conn, endpoints: Sequence[str]) -> int:
    """Drop subscriptions a push service answered 404/410 for."""
    if not endpoints:
        return 0
    cur = await conn.execute("DELETE FROM push_subscriptions WHERE endpoint = ANY(%s)", (list(endpoints),))
    return cur.rowcount
