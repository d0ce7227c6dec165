"""Web Push: RFC 8030 delivery, RFC 8291 message encryption (aes128gcm), RFC 8292 VAPID.

The encryption and the VAPID token are pure functions (keys, salt and time are arguments) so
that RFC 8291's worked example can be reproduced byte for byte; the channel draws a fresh
ephemeral key pair and salt for every message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from alerts.channels.base import NO_ADDRESS, Attempt, Notification, PushSubscription
from alerts.channels.http import HttpChannel, Verdict, log_attempt, retry_after_ms, retryable_status
from alerts.channels.settings import WebPushSettings
from alerts.channels.text import clip_utf8
from whistle.domain import Severity
from whistle.timeutil import now_ms

RECORD_SIZE = 4096
HEADER_SIZE = 16 + 4 + 1 + 65  # salt, record size, key id length, the sender's public key
TAG_SIZE = 16
# Push services accept 4096 octets of body; one record, one padding delimiter.
MAX_PLAINTEXT = 4096 - HEADER_SIZE - TAG_SIZE - 1

URGENCY = {
    Severity.CRITICAL: "high",
    Severity.MAJOR: "normal",
    Severity.MINOR: "normal",
    Severity.WARNING: "low",
}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point: 0x04 || X || Y, 65 octets."""
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True, slots=True)
class ContentKeys:
    """RFC 8291 §3.3–3.4: what the ECDH secret, the auth secret and the salt become."""

    ikm: bytes
    cek: bytes
    nonce: bytes


def derive_keys(ecdh_secret: bytes, auth_secret: bytes, ua_public: bytes, as_public: bytes, salt: bytes) -> ContentKeys:
    """IKM from the ECDH and auth secrets (key_info binds both public keys), then CEK and nonce (RFC 8188)."""
    key_info = b"WebPush: info\x00" + ua_public + as_public
    ikm = _hkdf(auth_secret, ecdh_secret, key_info, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    return ContentKeys(ikm, cek, nonce)


def encrypt(
    plaintext: bytes,
    *,
    ua_public: bytes,
    auth_secret: bytes,
    as_private: ec.EllipticCurvePrivateKey | None = None,
    salt: bytes | None = None,
    record_size: int = RECORD_SIZE,
) -> bytes:
    """The aes128gcm body of a push message: header (salt, rs, keyid = our ephemeral public key)
    and one record of plaintext, the 0x02 last-record delimiter, and the GCM tag."""
    if len(ua_public) != 65 or ua_public[0] != 4:
        raise ValueError("p256dh must be an uncompressed P-256 point (65 octets)")
    if len(auth_secret) != 16:
        raise ValueError("auth must be 16 octets")
    if len(plaintext) + 1 + TAG_SIZE > record_size:
        raise ValueError(f"plaintext of {len(plaintext)} octets does not fit a {record_size}-octet record")
    as_private = as_private or ec.generate_private_key(ec.SECP256R1())
    salt = salt if salt is not None else os.urandom(16)
    if len(salt) != 16:
        raise ValueError("salt must be 16 octets")
    ua_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ua_public)
    as_public = public_key_bytes(as_private.public_key())
    ecdh_secret = as_private.exchange(ec.ECDH(), ua_key)
    keys = derive_keys(ecdh_secret, auth_secret, ua_public, as_public, salt)
    record = AESGCM(keys.cek).encrypt(keys.nonce, plaintext + b"\x02", None)
    header = salt + record_size.to_bytes(4, "big") + bytes([len(as_public)]) + as_public
    return header + record


# --- VAPID (RFC 8292) ----------------------------------------------------------------------------


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A VAPID private key from base64url (the 32-octet scalar, as web-push tools print it) or PEM."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("the VAPID key must be a P-256 private key")
        return key
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError("a base64url VAPID private key must decode to 32 octets")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def generate_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair: (private scalar, public point), both base64url; the public one goes to browsers."""
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    return b64url_encode(scalar), b64url_encode(public_key_bytes(key.public_key()))


def audience(endpoint: str) -> str:
    """The JWT `aud`: the origin of the push resource (scheme, host, port)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def vapid_token(key: ec.EllipticCurvePrivateKey, *, aud: str, sub: str, exp: int) -> str:
    """An ES256 JWT with `aud`, `exp` (seconds, at most 24 h ahead) and `sub`; the signature is r || s."""
    header = b64url_encode(json.dumps({"typ": "JWT", "alg": "ES256"}, separators=(",", ":")).encode())
    claims = b64url_encode(json.dumps({"aud": aud, "exp": exp, "sub": sub}, separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode("ascii")
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{header}.{claims}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def vapid_authorization(key: ec.EllipticCurvePrivateKey, *, aud: str, sub: str, exp: int) -> str:
    """`vapid t=<jwt>, k=<base64url public key>` (RFC 8292 §3)."""
    token = vapid_token(key, aud=aud, sub=sub, exp=exp)
    return f"vapid t={token}, k={b64url_encode(public_key_bytes(key.public_key()))}"


# --- the channel ---------------------------------------------------------------------------------


def payload(message: Notification) -> bytes:
    """What the service worker receives: JSON without personal data (with the assignee's one-tap link: the push
    is encrypted to the worker's own browser), the body cut to fit one record."""
    doc = {**message.document(), "ack_url": message.ack_url}
    while True:
        raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        excess = len(raw) - MAX_PLAINTEXT
        if excess <= 0:
            return raw
        body = str(doc["body"])
        size = len(body.encode("utf-8"))
        if not size:
            raise ValueError("push payload too large even without its body")
        doc["body"] = clip_utf8(body, size - excess) if excess < size else ""


def topic(message: Notification) -> str:
    """RFC 8030 Topic (≤ 32 base64url characters): a retry of one notification replaces its queued copy."""
    return hashlib.blake2b(message.id.encode(), digest_size=16).hexdigest()


class WebPushChannel(HttpChannel):
    """Encrypts and POSTs one message per subscription of the recipient; ok if any push service took it."""

    VAPID_LIFETIME_S = 12 * 3600

    def __init__(
        self,
        settings: WebPushSettings,
        *,
        name: str = "webpush",
        clock: Callable[[], int] = now_ms,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, timeout_s=settings.timeout_s, clock=clock, transport=transport)
        if settings.vapid_private_key is None or not settings.vapid_subject:
            raise ValueError("Web Push needs a VAPID private key and subject")
        self._key = load_vapid_key(settings.vapid_private_key.get_secret_value())
        self._subject = settings.vapid_subject
        self._ttl = settings.ttl_s
        self._allow_http = settings.allow_http

    @property
    def public_key(self) -> str:
        """The application server key browsers pass to pushManager.subscribe()."""
        return b64url_encode(public_key_bytes(self._key.public_key()))

    async def send(self, message: Notification) -> Attempt:
        subscriptions = message.recipient.push
        if not subscriptions:
            attempt = Attempt(
                channel=self.name,
                notification_id=message.id,
                ok=False,
                retryable=False,
                code=NO_ADDRESS,
                error="no push subscription",
            )
            log_attempt(attempt, message)
            return attempt
        body = payload(message)
        attempts = await asyncio.gather(*(self._send_one(message, s, body) for s in subscriptions))
        return self._combine(message, subscriptions, attempts)

    async def _send_one(self, message: Notification, sub: PushSubscription, plaintext: bytes) -> Attempt:
        origin = audience(sub.endpoint)
        scheme = urlsplit(sub.endpoint).scheme
        if scheme != "https" and not (scheme == "http" and self._allow_http):
            return self._refused(message, origin, f"endpoint scheme {scheme!r} is not allowed")
        try:
            content = encrypt(plaintext, ua_public=b64url_decode(sub.p256dh), auth_secret=b64url_decode(sub.auth))
        except ValueError as exc:  # malformed keys from the browser (binascii.Error is a ValueError)
            return self._refused(message, origin, f"bad subscription keys: {exc}")
        exp = self._clock() // 1000 + self.VAPID_LIFETIME_S
        headers = {
            "Authorization": vapid_authorization(self._key, aud=origin, sub=self._subject, exp=exp),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self._ttl),
            "Urgency": URGENCY[message.severity],
            "Topic": topic(message),
        }

        def read(response: httpx.Response, now: int) -> Verdict:
            status = response.status_code
            if status in (200, 201, 202):
                return Verdict(
                    ok=True, retryable=False, code=str(status), provider_message_id=response.headers.get("location")
                )
            if status in (404, 410):
                return Verdict(
                    ok=False, retryable=False, code=str(status), error="subscription gone", gone=(sub.endpoint,)
                )
            return Verdict(
                ok=False,
                retryable=retryable_status(status),
                code=str(status),
                error=f"HTTP {status}: {response.text[:200]}",
                retry_after_ms=retry_after_ms(response.headers, now),
            )

        return await self.exchange(
            message, address=origin, url=sub.endpoint, content=content, headers=headers, read=read
        )

    def _refused(self, message: Notification, origin: str, error: str) -> Attempt:
        attempt = Attempt(
            channel=self.name,
            notification_id=message.id,
            ok=False,
            retryable=False,
            address=origin,
            code="bad_subscription",
            error=error,
            at=self._clock(),
        )
        log_attempt(attempt, message)
        return attempt

    def _combine(self, message: Notification, subs: Sequence[PushSubscription], attempts: Sequence[Attempt]) -> Attempt:
        """One attempt for the recipient: delivered if any device's push service accepted it."""
        if len(attempts) == 1:
            return attempts[0]
        winner = next((a for a in attempts if a.ok), None)
        failed = [a for a in attempts if not a.ok]
        pick = winner or failed[-1]
        waits = [a.retry_after_ms for a in failed if a.retry_after_ms is not None]
        return Attempt(
            channel=self.name,
            notification_id=message.id,
            ok=winner is not None,
            retryable=winner is None and any(a.retryable for a in failed),
            address=f"{len(subs)} subscriptions",
            status=pick.status,
            code=pick.code,
            provider_message_id=winner.provider_message_id if winner else None,
            error="; ".join(f"{a.address}: {a.error}" for a in failed if a.error) or None,
            latency_ms=max(a.latency_ms for a in attempts),
            at=min(a.at for a in attempts),
            retry_after_ms=max(waits) if waits else None,
            gone=tuple(e for a in attempts for e in a.gone),
        )
