"""Web Push: RFC 8291's worked example byte for byte, VAPID, and a local push service that decrypts."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from alerts.channels.base import NO_ADDRESS, PushSubscription, Recipient
from alerts.channels.settings import WebPushSettings
from alerts.channels.webpush import (
    MAX_PLAINTEXT,
    WebPushChannel,
    audience,
    b64url_decode,
    b64url_encode,
    derive_keys,
    encrypt,
    generate_vapid_keys,
    load_vapid_key,
    payload,
    public_key_bytes,
    vapid_authorization,
)
from tests.alerts.channels.conftest import Serve
from tests.alerts.channels.http_server import Request, Response
from tests.alerts.channels.support import notification
from tests.alerts.channels.verifiers import decrypt_aes128gcm, verify_vapid
from whistle.domain import AlarmKind, Severity

# RFC 8291 §5 and Appendix A.
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_AS_PUBLIC = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_ECDH = "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs"
RFC_IKM = "S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg"
RFC_CEK = "oIhVW04MRdy2XN9CiKLxTg"
RFC_NONCE = "4h_95klXJ5E_qnoN"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmY"
    "WAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexS"
    "gSxsj_Qulcy4a-fN"
)


def private_key(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(b64), "big"), ec.SECP256R1())


def test_encrypt_reproduces_rfc8291_example_byte_for_byte() -> None:
    as_private = private_key(RFC_AS_PRIVATE)
    assert b64url_encode(public_key_bytes(as_private.public_key())) == RFC_AS_PUBLIC
    body = encrypt(
        RFC_PLAINTEXT,
        ua_public=b64url_decode(RFC_UA_PUBLIC),
        auth_secret=b64url_decode(RFC_AUTH),
        as_private=as_private,
        salt=b64url_decode(RFC_SALT),
    )
    assert b64url_encode(body) == RFC_BODY
    assert len(body) == 86 + len(RFC_PLAINTEXT) + 1 + 16
    assert body[16:20] == (4096).to_bytes(4, "big") and body[20] == 65


def test_key_derivation_matches_rfc8291_appendix_a() -> None:
    ua_public = b64url_decode(RFC_UA_PUBLIC)
    ecdh = private_key(RFC_AS_PRIVATE).exchange(
        ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ua_public)
    )
    assert b64url_encode(ecdh) == RFC_ECDH
    keys = derive_keys(ecdh, b64url_decode(RFC_AUTH), ua_public, b64url_decode(RFC_AS_PUBLIC), b64url_decode(RFC_SALT))
    assert (b64url_encode(keys.ikm), b64url_encode(keys.cek), b64url_encode(keys.nonce)) == (
        RFC_IKM,
        RFC_CEK,
        RFC_NONCE,
    )


def test_the_independent_decrypter_opens_the_rfc_example() -> None:
    """The push-service fake's decrypter agrees with the RFC too, so the fake tests something."""
    assert decrypt_aes128gcm(b64url_decode(RFC_BODY), private_key(RFC_UA_PRIVATE), b64url_decode(RFC_AUTH)) == (
        RFC_PLAINTEXT
    )


def test_every_message_has_a_fresh_key_and_salt() -> None:
    ua = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    one = encrypt(b"same", ua_public=public_key_bytes(ua.public_key()), auth_secret=auth)
    two = encrypt(b"same", ua_public=public_key_bytes(ua.public_key()), auth_secret=auth)
    assert one[:16] != two[:16] and one[21:86] != two[21:86]
    assert decrypt_aes128gcm(one, ua, auth) == decrypt_aes128gcm(two, ua, auth) == b"same"


def test_encrypt_refuses_bad_keys_and_oversized_plaintext() -> None:
    ua_public = b64url_decode(RFC_UA_PUBLIC)
    with pytest.raises(ValueError, match="p256dh"):
        encrypt(b"x", ua_public=ua_public[:64], auth_secret=os.urandom(16))
    with pytest.raises(ValueError, match="auth"):
        encrypt(b"x", ua_public=ua_public, auth_secret=os.urandom(8))
    with pytest.raises(ValueError, match="record"):
        encrypt(b"x" * 4080, ua_public=ua_public, auth_secret=os.urandom(16))
    encrypt(b"x" * MAX_PLAINTEXT, ua_public=ua_public, auth_secret=os.urandom(16))


def test_vapid_token_verifies_independently_and_binds_the_audience() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    exp = int(time.time()) + 3600
    header = vapid_authorization(key, aud="https://push.example.net", sub="mailto:ops@example.org", exp=exp)
    request = Request("POST", "/p/1", {"authorization": header}, b"")
    assert verify_vapid(request, "https://push.example.net") is None
    assert verify_vapid(request, "https://other.example.net") is not None
    other_key = b64url_encode(public_key_bytes(ec.generate_private_key(ec.SECP256R1()).public_key()))
    forged = header.rsplit("k=", 1)[0] + "k=" + other_key
    assert verify_vapid(Request("POST", "/", {"authorization": forged}, b""), "https://push.example.net") == (
        "bad JWT signature"
    )


def test_vapid_keys_load_from_base64url_and_pem() -> None:
    private, public = generate_vapid_keys()
    key = load_vapid_key(private)
    assert b64url_encode(public_key_bytes(key.public_key())) == public
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert load_vapid_key(pem).private_numbers() == key.private_numbers()
    with pytest.raises(ValueError, match="32 octets"):
        load_vapid_key(b64url_encode(b"short"))


def test_audience_is_the_endpoint_origin() -> None:
    assert audience("https://fcm.googleapis.com/fcm/send/abc:def") == "https://fcm.googleapis.com"
    assert audience("http://127.0.0.1:8123/push/1") == "http://127.0.0.1:8123"


def test_payload_carries_no_personal_data_and_fits_one_record() -> None:
    small = json.loads(payload(notification()))
    assert small["title"] == "瑞金二路 1 弄 3 号 烟感报警" and small["ticket_id"] == "T-1001"
    assert "13812345678" not in json.dumps(small, ensure_ascii=False) and "李小龙" not in json.dumps(small)
    big = payload(notification(body="火" * 5000))
    assert len(big) <= MAX_PLAINTEXT
    assert json.loads(big)["body"].endswith("…")


# --- against a local push service -----------------------------------------------------------------


class Device:
    """A browser's push subscription: its key pair and auth secret, and what it received."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.subscription = PushSubscription(
            endpoint=endpoint,
            p256dh=b64url_encode(public_key_bytes(self.key.public_key())),
            auth=b64url_encode(self.auth),
        )


class PushService:
    """A push service that checks VAPID, decrypts with the subscriber's key, and answers per path."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.answers: dict[str, list[Response]] = {}
        self.received: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.origin = ""

    async def handle(self, req: Request) -> Response:
        error = verify_vapid(req, self.origin)
        if error:
            return Response(403, error.encode())
        if req.headers.get("content-encoding") != "aes128gcm" or not req.headers.get("ttl", "").isdigit():
            return Response(400, b"bad headers")
        if req.headers.get("urgency") not in ("very-low", "low", "normal", "high"):
            return Response(400, b"bad urgency")
        queued = self.answers.get(req.path)
        if queued:
            return queued.pop(0)
        device = self.devices.get(req.path)
        if device is None:
            return Response(404, b"no such subscription")
        plaintext = decrypt_aes128gcm(req.body, device.key, device.auth)
        self.received.append((req.path, json.loads(plaintext), req.headers))
        return Response(201, headers={"Location": f"{self.origin}/m/{len(self.received)}"})

    def device(self, path: str) -> Device:
        device = Device(self.origin + path)
        self.devices[path] = device
        return device


@pytest.fixture
async def push_service(serve: Serve) -> PushService:
    service = PushService()
    server = await serve(service.handle)
    service.origin = server.url
    return service


def webpush(allow_http: bool = True) -> WebPushChannel:
    private, _ = generate_vapid_keys()
    return WebPushChannel(
        WebPushSettings(vapid_private_key=private, vapid_subject="mailto:ops@example.org", allow_http=allow_http)
    )


async def test_push_is_encrypted_to_the_device_and_urgent_when_critical(push_service: PushService) -> None:
    phone = push_service.device("/push/phone-1")
    async with webpush() as channel:
        attempt = await channel.send(notification(push=(phone.subscription,)))
    assert attempt.ok and attempt.status == 201
    assert attempt.provider_message_id == f"{push_service.origin}/m/1"
    assert attempt.address == push_service.origin
    [(path, doc, headers)] = push_service.received
    assert path == "/push/phone-1"
    assert doc["id"] == "n-1" and doc["kind"] == "smoke.fire" and doc["severity"] == "critical"
    assert headers["urgency"] == "high" and headers["ttl"] == str(12 * 3600)
    assert len(headers["topic"]) == 32


async def test_warning_goes_with_low_urgency(push_service: PushService) -> None:
    phone = push_service.device("/push/phone-1")
    async with webpush() as channel:
        attempt = await channel.send(
            notification(severity=Severity.WARNING, kind=AlarmKind.DEVICE_OFFLINE, push=(phone.subscription,))
        )
    assert attempt.ok
    assert push_service.received[0][2]["urgency"] == "low"


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_reported_and_not_retried(push_service: PushService, status: int) -> None:
    phone = push_service.device("/push/old")
    push_service.answers["/push/old"] = [Response(status)]
    async with webpush() as channel:
        attempt = await channel.send(notification(push=(phone.subscription,)))
    assert not attempt.ok and not attempt.retryable
    assert attempt.gone == (phone.subscription.endpoint,)


async def test_rate_limit_and_server_errors_are_retryable(push_service: PushService) -> None:
    phone = push_service.device("/push/busy")
    push_service.answers["/push/busy"] = [Response(429, headers={"Retry-After": "7"}), Response(502)]
    async with webpush() as channel:
        limited = await channel.send(notification(push=(phone.subscription,)))
        broken = await channel.send(notification(push=(phone.subscription,)))
        fine = await channel.send(notification(push=(phone.subscription,)))
    assert not limited.ok and limited.retryable and limited.retry_after_ms == 7000
    assert not broken.ok and broken.retryable and broken.status == 502
    assert fine.ok


async def test_one_live_device_is_enough_and_the_gone_one_is_reported(push_service: PushService) -> None:
    old = push_service.device("/push/old")
    new = push_service.device("/push/new")
    push_service.answers["/push/old"] = [Response(410)]
    async with webpush() as channel:
        attempt = await channel.send(notification(push=(old.subscription, new.subscription)))
    assert attempt.ok and not attempt.retryable
    assert attempt.gone == (old.subscription.endpoint,)
    assert [p for p, _, _ in push_service.received] == ["/push/new"]


async def test_the_push_service_refuses_a_bad_vapid_token(push_service: PushService) -> None:
    """The fake checks the JWT: a token for another audience is refused with 403."""
    phone = push_service.device("/push/phone")
    push_service.origin = "http://push.elsewhere.example"
    async with webpush() as channel:
        attempt = await channel.send(notification(push=(phone.subscription,)))
    assert not attempt.ok and attempt.status == 403 and not attempt.retryable


async def test_plain_http_endpoints_are_refused_unless_allowed(push_service: PushService) -> None:
    phone = push_service.device("/push/phone")
    async with webpush(allow_http=False) as channel:
        attempt = await channel.send(notification(push=(phone.subscription,)))
    assert not attempt.ok and not attempt.retryable and attempt.code == "bad_subscription"
    assert push_service.received == []


async def test_malformed_subscription_keys_and_no_subscription() -> None:
    bad = PushSubscription("https://push.example/x", p256dh="AAAA", auth="AAAA")
    async with webpush() as channel:
        refused = await channel.send(notification(push=(bad,)))
        nothing = await channel.send(notification(recipient=Recipient(id="W-1", name="张三")))
    assert refused.code == "bad_subscription" and not refused.retryable
    assert nothing.code == NO_ADDRESS
