"""What the fake providers check, written apart from alerts.channels (sharing none of its code).

Each verifier returns None when the request is genuine and a reason string when it is not, as
a provider would refuse it. They follow the providers' published descriptions step by step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.alerts.channels.http_server import Request

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def rfc3986(text: str) -> str:
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def unb64url(text: str) -> bytes:
    return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))


def _hmac_hex(key: bytes, msg: bytes) -> str:
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


# --- Alibaba Cloud V3 -----------------------------------------------------------------------------


def verify_acs3(req: Request, key_id: str, secret: str, *, max_skew_s: int = 900) -> str | None:
    auth = req.headers.get("authorization", "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "ACS3-HMAC-SHA256":
        return "IncompleteSignature"
    fields = dict(item.split("=", 1) for item in rest.split(","))
    if fields.get("Credential") != key_id:
        return "InvalidAccessKeyId.NotFound"
    signed = fields.get("SignedHeaders", "").split(";")
    required = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
    present_acs = {h for h in req.headers if h.startswith("x-acs-")}
    if not required <= set(signed) or not present_acs <= set(signed):
        return "IncompleteSignature: unsigned headers"
    if hashlib.sha256(req.body).hexdigest() != req.headers.get("x-acs-content-sha256"):
        return "ContentSHA256Mismatch"
    sent = datetime.strptime(req.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if abs(sent.timestamp() - time.time()) > max_skew_s:
        return "InvalidTimeStamp.Expired"
    pairs = sorted((rfc3986(k), rfc3986(v)) for k, v in parse_qsl(req.raw_query, keep_blank_values=True))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    headers = "".join(f"{name}:{req.headers[name].strip()}\n" for name in sorted(signed))
    canonical = "\n".join(
        ["POST", req.path or "/", query, headers, ";".join(sorted(signed)), req.headers["x-acs-content-sha256"]]
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expected = _hmac_hex(secret.encode(), to_sign.encode())
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return "SignatureDoesNotMatch"
    return None


# --- Tencent Cloud TC3 ----------------------------------------------------------------------------


def verify_tc3(req: Request, secret_id: str, secret_key: str, service: str, *, max_skew_s: int = 300) -> str | None:
    auth = req.headers.get("authorization", "")
    if not auth.startswith("TC3-HMAC-SHA256 "):
        return "AuthFailure.SignatureFailure"
    fields = dict(part.strip().split("=", 1) for part in auth[len("TC3-HMAC-SHA256 ") :].split(","))
    cred_id, date, svc, terminator = fields["Credential"].split("/")
    if cred_id != secret_id:
        return "AuthFailure.SecretIdNotFound"
    timestamp = int(req.headers["x-tc-timestamp"])
    if abs(timestamp - time.time()) > max_skew_s:
        return "AuthFailure.SignatureExpire"
    if (
        date != datetime.fromtimestamp(timestamp, UTC).date().isoformat()
        or svc != service
        or terminator != "tc3_request"
    ):
        return "AuthFailure.SignatureFailure: credential scope"
    signed = fields["SignedHeaders"].split(";")
    if "content-type" not in signed or "host" not in signed:
        return "AuthFailure.SignatureFailure: content-type and host must be signed"
    headers = "".join(f"{h}:{req.headers[h].strip().lower()}\n" for h in signed)
    payload_hash = hashlib.sha256(req.body).hexdigest()
    canonical = f"POST\n{req.path or '/'}\n{req.raw_query}\n{headers}\n{';'.join(signed)}\n{payload_hash}"
    to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(timestamp),
            f"{date}/{svc}/tc3_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("TC3" + secret_key).encode()
    for part in (date, svc, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(_hmac_hex(key, to_sign.encode()), fields["Signature"]):
        return "AuthFailure.SignatureFailure"
    return None


# --- DingTalk robot and the generic webhook -------------------------------------------------------


def verify_dingtalk(req: Request, secret: str, *, max_skew_ms: int = 3_600_000) -> str | None:
    query = req.query
    if "timestamp" not in query or "sign" not in query:
        return "missing timestamp or sign"
    timestamp = int(query["timestamp"])
    if abs(timestamp - time.time() * 1000) > max_skew_ms:
        return "timestamp too far from now"
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), query["sign"]):
        return "sign not match"
    return None


def verify_webhook(req: Request, secret: str, *, max_skew_s: int = 300) -> str | None:
    signature = req.headers.get("x-whistle-signature", "")
    if not signature.startswith("sha256="):
        return "no signature"
    if not hmac.compare_digest(_hmac_hex(secret.encode(), req.body), signature[len("sha256=") :]):
        return "bad signature"
    stamp = int(req.headers.get("x-whistle-timestamp", "0"))
    if abs(stamp - time.time()) > max_skew_s or json.loads(req.body).get("sent_at") != stamp:
        return "stale or unbound timestamp"
    return None


# --- Web Push: VAPID (RFC 8292) and aes128gcm (RFC 8291) --------------------------------------------


def verify_vapid(req: Request, origin: str) -> str | None:
    scheme, _, params = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "vapid":
        return "not a vapid authorization"
    values = dict(p.strip().split("=", 1) for p in params.split(","))
    token, key = values.get("t", ""), values.get("k", "")
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(unb64url(head_b64))
        claims = json.loads(unb64url(claims_b64))
        raw_sig = unb64url(sig_b64)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    except ValueError as exc:
        return f"malformed: {exc}"
    if header.get("alg") != "ES256" or len(raw_sig) != 64:
        return "not ES256"
    der = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
    try:
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "bad JWT signature"
    now = time.time()
    if claims.get("aud") != origin:
        return f"aud {claims.get('aud')!r} is not {origin!r}"
    if not now < claims.get("exp", 0) <= now + 24 * 3600:
        return "exp not within 24 hours"
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        return "sub is not a contact URI"
    return None


def decrypt_aes128gcm(body: bytes, ua_private: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """What the browser does with a push message (RFC 8291 §3, RFC 8188 §2), by hand."""
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    as_public = body[21 : 21 + idlen]
    record = body[21 + idlen :]
    assert len(record) <= rs, "one record no larger than the record size"
    ua_public = ua_private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    shared = ua_private.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public))

    def h(key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, hashlib.sha256).digest()

    prk_key = h(auth_secret, shared)
    ikm = h(prk_key, b"WebPush: info\x00" + ua_public + as_public + b"\x01")
    prk = h(salt, ikm)
    cek = h(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = h(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    padded = AESGCM(cek).decrypt(nonce, record, None)
    end = len(padded.rstrip(b"\x00"))
    assert end and padded[end - 1] == 2, "the last record ends with the 0x02 delimiter"
    return padded[: end - 1]
