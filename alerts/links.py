"""Links in messages: a ticket on the worker's page, and the one-tap link that lets its assignee acknowledge it.

A one-tap link (`/m/a/<token>`) is a bearer credential for exactly one thing: acknowledging one ticket as the
one worker it is assigned to, before it expires. The token is short enough for an SMS template variable
(27 characters): version (1 octet), the ticket's short code (6), the expiry in minutes since the epoch (4)
and 9 octets of HMAC-SHA256 over them *and over the assignee's id and the ticket's assignment number*,
which the token does not carry: the server looks the ticket up by its code and recomputes the MAC with
the ticket's current assignee, so a reassigned ticket's old links stop working, and a link can never be
stretched to another ticket or another worker. 72 bits of MAC, behind the sign-in rate limit per
address, cannot be guessed. It signs nobody in: it opens no session and reads nothing else.

The key is WHISTLE_LINK_SECRET, or, unset, 32 random octets made once and kept in the database
(`service_keys`), so every process of a deployment signs and checks with the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from whistle.store.db import Database
from whistle.timeutil import MINUTE_MS

VERSION = 1
_LAYOUT = struct.Struct(">B6sI")  # version, short code (48-bit), expiry (minutes since the epoch)
MAC_BYTES = 9
TOKEN_BYTES = _LAYOUT.size + MAC_BYTES  # 20 octets: 27 base64url characters
_CONTEXT = b"whistle one-tap v1\x00"
KEY_NAME = "one_tap_links"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, head: bytes, worker_id: str, assignment: int) -> bytes:
    msg = _CONTEXT + head + worker_id.encode() + b"\x00" + str(assignment).encode()
    return hmac.new(key, msg, hashlib.sha256).digest()[:MAC_BYTES]


def sign(key: bytes, *, code: int, worker_id: str, assignment: int, expires_at: int) -> str:
    """A one-tap token for ticket `code`, for `worker_id` on its `assignment`, valid until `expires_at` (ms)."""
    if not 0 < code < 2**48:
        raise ValueError("a short code is a positive 48-bit number")
    minutes = -(-expires_at // MINUTE_MS)  # rounded up: a link never expires before it says
    head = _LAYOUT.pack(VERSION, code.to_bytes(6, "big"), minutes)
    return _b64(head + _mac(key, head, worker_id, assignment))


@dataclass(frozen=True, slots=True)
class OneTapToken:
    """A token as read, before it is checked: which ticket it names and until when it says it holds."""

    code: int
    expires_at: int  # ms
    head: bytes
    mac: bytes

    def valid_for(self, key: bytes, *, worker_id: str, assignment: int) -> bool:
        """Whether it was signed with `key` for this worker and assignment (constant time)."""
        return hmac.compare_digest(self.mac, _mac(key, self.head, worker_id, assignment))

    def expired(self, now: int) -> bool:
        return now >= self.expires_at


def read(token: str) -> OneTapToken | None:
    """The token's fields, or None if it is not a token of ours (never raises)."""
    if len(token) != 27 or not all(c.isalnum() or c in "-_" for c in token):
        return None
    try:
        raw = _unb64(token)
    except ValueError:
        return None
    if len(raw) != TOKEN_BYTES:
        return None
    head = raw[: _LAYOUT.size]
    version, code, minutes = _LAYOUT.unpack(head)
    if version != VERSION:
        return None
    return OneTapToken(int.from_bytes(code, "big"), minutes * MINUTE_MS, head, raw[_LAYOUT.size :])


async def link_key(db: Database, configured: bytes | None = None) -> bytes:
    """The key one-tap links are signed with: the configured one, or the deployment's own from the database
    (made by the first process that asks; every other process reads the same)."""
    if configured is not None:
        return configured
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO service_keys (name, secret) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
            (KEY_NAME, secrets.token_bytes(32)),
        )
        cur = await conn.execute("SELECT secret FROM service_keys WHERE name = %s", (KEY_NAME,))
        row = await cur.fetchone()
    assert row is not None
    return bytes(row[0])


@dataclass(frozen=True, slots=True)
class Links:
    """Makes the links a message carries: `base_url` is where workers' phones reach the service."""

    base_url: str
    key: bytes
    ttl_ms: int = 24 * 3600 * 1000

    def ticket_page(self, ticket_id: str) -> str:
        """The ticket on the worker's page (signing in if needed)."""
        return f"{self.base_url}/m/#/t/{ticket_id}"

    def one_tap(self, *, code: int, worker_id: str, assignment: int, now: int) -> str:
        """The one-tap link for the assignee: that ticket, acknowledged with one tap, until `now + ttl`."""
        token = sign(self.key, code=code, worker_id=worker_id, assignment=assignment, expires_at=now + self.ttl_ms)
        return f"{self.base_url}/m/a/{token}"
