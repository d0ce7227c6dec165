"""SMS through Alibaba Cloud (V3 signature) and Tencent Cloud (TC3 signature), no vendor SDK.

Chinese SMS go out only through an approved signature (签名) and template (模板); the message
text is the template with our fields filled in (WHISTLE_SMS_*_TEMPLATE_PARAMS names which, in
order). Both providers can be configured at once, as two channels, so a route can fail over
from one vendor to the other.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from alerts.channels.base import NO_ADDRESS, Attempt, Notification
from alerts.channels.http import HttpChannel, Verdict, log_attempt, retryable_status
from alerts.channels.settings import AliyunSmsSettings, TencentSmsSettings
from alerts.channels.signing import acs3_canonical_query, acs3_date, acs3_sign, sha256_hex, tc3_sign
from alerts.channels.text import UNCLIPPED_FIELDS, clip, template_values
from whistle.privacy import mask_phone
from whistle.timeutil import MINUTE_MS, now_ms


def template_params(message: Notification, fields: str, max_chars: int) -> list[tuple[str, str]]:
    """The template variables, in the configured order, each cut to the provider's length limit."""
    values = template_values(message)
    return [
        (name, values[name] if name in UNCLIPPED_FIELDS else clip(values[name], max_chars))
        for name in fields.split(",")
        if name
    ]


def _no_phone(channel: str, message: Notification) -> Attempt:
    attempt = Attempt(
        channel=channel, notification_id=message.id, ok=False, retryable=False, code=NO_ADDRESS, error="no phone number"
    )
    log_attempt(attempt, message)
    return attempt


def _json(response: httpx.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {response.text[:100]!r}") from exc
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    return data


def _split(endpoint: str) -> tuple[str, str, str]:
    """(host header, path, URL without query) of an endpoint."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {endpoint!r}")
    path = parts.path or "/"
    return parts.netloc.lower(), path, urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class _SmsChannel(HttpChannel):
    """What both providers share: one signed request per message to the recipient's phone."""

    def request(self, message: Notification, phone: str) -> tuple[str, dict[str, str], bytes]:
        raise NotImplementedError

    def _read(self, response: httpx.Response, now: int) -> Verdict:
        raise NotImplementedError

    async def send(self, message: Notification) -> Attempt:
        phone = message.recipient.phone
        if not phone:
            return _no_phone(self.name, message)
        url, headers, body = self.request(message, phone)
        return await self.exchange(
            message, address=mask_phone(phone), url=url, content=body, headers=headers, read=self._read
        )


class AliyunSmsChannel(_SmsChannel):
    """Alibaba Cloud `SendSms` (dysmsapi, 2017-05-25) signed with ACS3-HMAC-SHA256."""

    ACTION = "SendSms"
    VERSION = "2017-05-25"
    # Codes worth another try, with how long the provider wants us to wait (None: our backoff).
    RETRYABLE: Mapping[str, int | None] = {
        "isv.BUSINESS_LIMIT_CONTROL": MINUTE_MS,  # per-number frequency control (1/min, 5/h, 10/day by default)
        "Throttling": None,
        "Throttling.User": None,
        "Throttling.Api": None,
        "ServiceUnavailable": None,
        "InternalError": None,
        "isp.SYSTEM_ERROR": None,
    }

    def __init__(
        self,
        settings: AliyunSmsSettings,
        *,
        name: str = "sms.aliyun",
        clock: Callable[[], int] = now_ms,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, timeout_s=settings.timeout_s, clock=clock, transport=transport)
        if settings.access_key_id is None or settings.access_key_secret is None:
            raise ValueError("Alibaba Cloud SMS needs an access key id and secret")
        self._key_id = settings.access_key_id
        self._secret = settings.access_key_secret.get_secret_value()
        self._sign_name = settings.sign_name or ""
        self._template = settings.template_code or ""
        self._fields = settings.template_params
        self._max_chars = settings.param_max_chars
        self._host, self._path, self._url = _split(settings.endpoint)
        self._nonce = nonce

    def request(self, message: Notification, phone: str) -> tuple[str, dict[str, str], bytes]:
        """(URL, headers, body) of the signed request: the parameters in the query, an empty body."""
        params = {
            "PhoneNumbers": phone,
            "SignName": self._sign_name,
            "TemplateCode": self._template,
            "TemplateParam": json.dumps(
                dict(template_params(message, self._fields, self._max_chars)), ensure_ascii=False, separators=(",", ":")
            ),
            "OutId": message.id[:64],  # echoed in delivery receipts
        }
        body = b""
        headers = {
            "host": self._host,
            "x-acs-action": self.ACTION,
            "x-acs-version": self.VERSION,
            "x-acs-date": acs3_date(self._clock()),
            "x-acs-signature-nonce": self._nonce(),
            "x-acs-content-sha256": sha256_hex(body),
        }
        signed = acs3_sign(
            method="POST",
            path=self._path,
            query=params,
            headers=headers,
            body=body,
            access_key_id=self._key_id,
            access_key_secret=self._secret,
        )
        headers["authorization"] = signed.authorization
        return f"{self._url}?{acs3_canonical_query(params)}", headers, body

    def _read(self, response: httpx.Response, now: int) -> Verdict:
        data = _json(response)
        code = str(data.get("Code", "")) or None
        message = str(data.get("Message", ""))
        if response.status_code == 200 and code == "OK":
            return Verdict(ok=True, retryable=False, code=code, provider_message_id=data.get("BizId"))
        known = code in self.RETRYABLE
        return Verdict(
            ok=False,
            retryable=known or retryable_status(response.status_code),
            code=code or str(response.status_code),
            error=f"{code}: {message}",
            retry_after_ms=self.RETRYABLE.get(code) if code else None,
        )


class TencentSmsChannel(_SmsChannel):
    """Tencent Cloud `SendSms` (sms, 2021-01-11) signed with TC3-HMAC-SHA256."""

    ACTION = "SendSms"
    VERSION = "2021-01-11"
    SERVICE = "sms"
    CONTENT_TYPE = "application/json; charset=utf-8"
    RETRYABLE: Mapping[str, int | None] = {
        "LimitExceeded.PhoneNumberThirtySecondLimit": 30_000,
        "LimitExceeded.PhoneNumberOneHourLimit": 60 * MINUTE_MS,
        "RequestLimitExceeded": 1_000,
        "AuthFailure.SignatureExpire": None,  # our clock was off; a fresh timestamp may pass
        "InternalError": None,
        "InternalError.Timeout": None,
        "InternalError.RequestTimeException": None,
        "InternalError.SendAndRecvFail": None,
        "FailedOperation.JsonParseFail": None,
    }

    def __init__(
        self,
        settings: TencentSmsSettings,
        *,
        name: str = "sms.tencent",
        clock: Callable[[], int] = now_ms,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, timeout_s=settings.timeout_s, clock=clock, transport=transport)
        if settings.secret_id is None or settings.secret_key is None:
            raise ValueError("Tencent Cloud SMS needs a secret id and key")
        self._secret_id = settings.secret_id
        self._secret_key = settings.secret_key.get_secret_value()
        self._app_id = settings.sdk_app_id or ""
        self._sign_name = settings.sign_name or ""
        self._template = settings.template_id or ""
        self._fields = settings.template_params
        self._max_chars = settings.param_max_chars
        self._region = settings.region
        self._host, self._path, self._url = _split(settings.endpoint)

    def request(self, message: Notification, phone: str) -> tuple[str, dict[str, str], bytes]:
        """(URL, headers, body) of the signed request: JSON body, action and version in headers."""
        body = json.dumps(
            {
                "PhoneNumberSet": [phone],
                "SmsSdkAppId": self._app_id,
                "SignName": self._sign_name,
                "TemplateId": self._template,
                "TemplateParamSet": [v for _, v in template_params(message, self._fields, self._max_chars)],
                "SessionContext": message.id[:512],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        timestamp = self._clock() // 1000
        signed_headers = {"content-type": self.CONTENT_TYPE, "host": self._host, "x-tc-action": self.ACTION}
        signed = tc3_sign(
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            service=self.SERVICE,
            timestamp=timestamp,
            headers=signed_headers,
            payload=body,
            path=self._path,
        )
        headers = {
            "Authorization": signed.authorization,
            "Content-Type": self.CONTENT_TYPE,
            "Host": self._host,
            "X-TC-Action": self.ACTION,
            "X-TC-Version": self.VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self._region,
        }
        return self._url, headers, body

    def _read(self, response: httpx.Response, now: int) -> Verdict:
        data = _json(response).get("Response")
        if not isinstance(data, Mapping):
            raise ValueError("no Response object")
        error = data.get("Error")
        if isinstance(error, Mapping):
            code = str(error.get("Code", "")) or str(response.status_code)
            return self._failure(code, str(error.get("Message", "")), response.status_code)
        statuses = data.get("SendStatusSet")
        if not isinstance(statuses, list) or not statuses or not isinstance(statuses[0], Mapping):
            raise ValueError("no SendStatusSet")
        status = statuses[0]
        code = str(status.get("Code", ""))
        if code.lower() == "ok":
            return Verdict(ok=True, retryable=False, code=code, provider_message_id=status.get("SerialNo"))
        return self._failure(code, str(status.get("Message", "")), response.status_code)

    def _failure(self, code: str, message: str, http_status: int) -> Verdict:
        retryable = code in self.RETRYABLE or code.startswith("InternalError") or retryable_status(http_status)
        return Verdict(
            ok=False,
            retryable=retryable,
            code=code,
            error=f"{code}: {message}",
            retry_after_ms=self.RETRYABLE.get(code),
        )
