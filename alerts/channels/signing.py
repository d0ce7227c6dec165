"""Request signatures, as pure functions of their inputs (time and nonce are arguments).

- Alibaba Cloud V3, ACS3-HMAC-SHA256 ("V3版本请求体&签名机制", help.aliyun.com).
- Tencent Cloud API 3.0, TC3-HMAC-SHA256 ("签名方法 v3", cloud.tencent.com/document/api/213/30654).
- DingTalk custom robot "加签": HMAC-SHA256 over `timestamp + "\n" + secret`, base64.
- Our own webhook: `sha256=` + hex HMAC-SHA256 of the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ACS3 = "ACS3-HMAC-SHA256"
TC3 = "TC3-HMAC-SHA256"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Signed:
    """A signature with the strings it was computed over (kept for tests and debugging, never logged)."""

    authorization: str
    canonical_request: str
    string_to_sign: str
    signature: str
    signed_headers: str


# --- Alibaba Cloud ACS3-HMAC-SHA256 -------------------------------------------------------------


def acs3_encode(value: str) -> str:
    """Percent-encoding as the V3 signature wants it: RFC 3986, UTF-8, only A-Z a-z 0-9 - _ . ~ kept."""
    return quote(value, safe="-_.~")


def acs3_canonical_query(params: Mapping[str, str]) -> str:
    """Sorted by encoded name, `name=value` pairs joined by `&` (an empty value is `name=`)."""
    pairs = sorted((acs3_encode(k), acs3_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def acs3_date(at_ms: int) -> str:
    """x-acs-date: ISO 8601 UTC without fractions, e.g. 2023-10-26T10:22:32Z."""
    return datetime.fromtimestamp(at_ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def acs3_sign(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    access_key_secret: str,
) -> Signed:
    """Sign a request: `headers` must hold host, x-acs-action, x-acs-version, x-acs-date,
    x-acs-signature-nonce and x-acs-content-sha256 (and content-type if the request has one)."""
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    if lowered.get("x-acs-content-sha256") != sha256_hex(body):
        raise ValueError("x-acs-content-sha256 does not match the body")
    names = sorted(n for n in lowered if n in ("host", "content-type") or n.startswith("x-acs-"))
    canonical_headers = "".join(f"{n}:{lowered[n]}\n" for n in names)
    signed_headers = ";".join(names)
    canonical_uri = quote(path or "/", safe="/-_.~")
    canonical_request = "\n".join(
        (
            method.upper(),
            canonical_uri,
            acs3_canonical_query(query),
            canonical_headers,
            signed_headers,
            lowered["x-acs-content-sha256"],
        )
    )
    string_to_sign = f"{ACS3}\n{sha256_hex(canonical_request.encode('utf-8'))}"
    signature = hmac.new(access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"{ACS3} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    return Signed(authorization, canonical_request, string_to_sign, signature, signed_headers)


# --- Tencent Cloud TC3-HMAC-SHA256 --------------------------------------------------------------


def tc3_sign(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    timestamp: int,
    headers: Mapping[str, str],
    payload: bytes,
    method: str = "POST",
    path: str = "/",
    query: str = "",
) -> Signed:
    """Sign a request over `headers` (at least content-type and host; names and values are lowercased).

    The credential scope's date is the UTC date of `timestamp` (seconds), never the local one.
    """
    lowered = {k.lower(): v.strip().lower() for k, v in headers.items()}
    names = sorted(lowered)
    canonical_headers = "".join(f"{n}:{lowered[n]}\n" for n in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join((method.upper(), path, query, canonical_headers, signed_headers, sha256_hex(payload)))
    date = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = f"{TC3}\n{timestamp}\n{scope}\n{sha256_hex(canonical_request.encode('utf-8'))}"
    secret_date = _hmac(f"TC3{secret_key}".encode(), date)
    secret_service = hmac.new(secret_date, service.encode(), hashlib.sha256).digest()
    secret_signing = hmac.new(secret_service, b"tc3_request", hashlib.sha256).digest()
    signature = hmac.new(secret_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"{TC3} Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    return Signed(authorization, canonical_request, string_to_sign, signature, signed_headers)


# --- DingTalk robot and our own webhook ---------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query parameter before URL encoding: base64(HMAC-SHA256(secret, f"{ts}\\n{secret}"))."""
    digest = _hmac(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}")
    return base64.b64encode(digest).decode("ascii")


def webhook_signature(secret: str, body: bytes) -> str:
    """X-Whistle-Signature: `sha256=` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
