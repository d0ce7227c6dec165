"""Group robots: DingTalk custom robot (signed webhook) and WeCom (企业微信) group robot.

A robot posts to a group, not to a person: the recipient is @-mentioned (DingTalk by mobile
number, WeCom by user id from `Recipient.addresses["wecom"]`) so that their phone rings.
Both robots allow about 20 messages a minute; over it they answer with an errcode we retry
after a minute.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from alerts.channels.base import Attempt, Notification
from alerts.channels.http import HttpChannel, Verdict, retryable_status
from alerts.channels.settings import DingTalkSettings, WeComSettings
from alerts.channels.signing import dingtalk_sign
from alerts.channels.text import markdown
from whistle.privacy import mask_phone
from whistle.timeutil import MINUTE_MS, now_ms


def _errcode_verdict(response: httpx.Response, retry_after: Mapping[int, int | None]) -> Verdict:
    """Both robots answer HTTP 200 with {"errcode": 0, "errmsg": "ok"} on success."""
    try:
        data: Any = response.json()
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {response.text[:100]!r}") from exc
    if not isinstance(data, Mapping) or "errcode" not in data:
        if retryable_status(response.status_code):
            return Verdict(ok=False, retryable=True, code=str(response.status_code), error="no errcode")
        raise ValueError("no errcode in the response")
    errcode = int(data["errcode"])
    if errcode == 0 and response.status_code == 200:
        return Verdict(ok=True, retryable=False, code="0")
    retryable = errcode in retry_after or retryable_status(response.status_code)
    return Verdict(
        ok=False,
        retryable=retryable,
        code=str(errcode),
        error=f"errcode {errcode}: {data.get('errmsg', '')}",
        retry_after_ms=retry_after.get(errcode),
    )


def mainland_number(phone: str) -> str:
    """DingTalk @-mentions take the bare 11-digit mainland number."""
    for prefix in ("+86", "0086"):
        if phone.startswith(prefix):
            return phone[len(prefix) :]
    return phone.lstrip("+")


class DingTalkChannel(HttpChannel):
    """DingTalk custom robot: markdown message, `timestamp` and `sign` (加签) in the query."""

    RETRYABLE: Mapping[int, int | None] = {
        -1: None,  # system busy
        130101: MINUTE_MS,  # send too fast: more than 20 messages a minute
    }
    MAX_TEXT_BYTES = 18_000  # the robot takes 20,000 bytes of markdown

    def __init__(
        self,
        settings: DingTalkSettings,
        *,
        name: str = "dingtalk",
        clock: Callable[[], int] = now_ms,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, timeout_s=settings.timeout_s, clock=clock, transport=transport)
        if settings.webhook is None:
            raise ValueError("the DingTalk robot needs its webhook URL")
        self._webhook = settings.webhook.get_secret_value()
        parts = urlsplit(self._webhook)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("WHISTLE_DINGTALK_WEBHOOK is not an http(s) URL")
        self._secret = settings.secret.get_secret_value() if settings.secret else None
        self._mention = settings.mention

    def url(self) -> str:
        """The webhook URL, with `timestamp` and `sign` added when the robot has a secret."""
        if self._secret is None:
            return self._webhook
        timestamp = self._clock()
        parts = urlsplit(self._webhook)
        query = [*parse_qsl(parts.query, keep_blank_values=True)]
        query += [("timestamp", str(timestamp)), ("sign", dingtalk_sign(self._secret, timestamp))]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    def body(self, message: Notification) -> dict[str, Any]:
        phone = message.recipient.phone if self._mention else None
        number = mainland_number(phone) if phone else None
        title, text = markdown(message, mention=f"@{number}" if number else None, max_bytes=self.MAX_TEXT_BYTES)
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {"atMobiles": [number] if number else [], "isAtAll": False},
        }

    async def send(self, message: Notification) -> Attempt:
        content = json.dumps(self.body(message), ensure_ascii=False).encode("utf-8")
        address = f"dingtalk robot @{mask_phone(message.recipient.phone)}"
        return await self.exchange(
            message,
            address=address,
            url=self.url(),
            content=content,
            headers={"Content-Type": "application/json; charset=utf-8"},
            read=lambda response, now: _errcode_verdict(response, self.RETRYABLE),
        )


class WeComChannel(HttpChannel):
    """WeCom group robot: markdown message to `…/webhook/send?key=KEY`."""

    RETRYABLE: Mapping[int, int | None] = {
        -1: None,  # system busy
        45009: MINUTE_MS,  # api freq out of limit: 20 messages a minute per robot
    }
    MAX_CONTENT_BYTES = 4096

    def __init__(
        self,
        settings: WeComSettings,
        *,
        name: str = "wecom",
        clock: Callable[[], int] = now_ms,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, timeout_s=settings.timeout_s, clock=clock, transport=transport)
        if settings.key is None:
            raise ValueError("the WeCom robot needs its key")
        parts = urlsplit(settings.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("WHISTLE_WECOM_ENDPOINT is not an http(s) URL")
        self._url = f"{settings.endpoint}?{urlencode({'key': settings.key.get_secret_value()})}"

    def body(self, message: Notification) -> dict[str, Any]:
        userid = message.recipient.addresses.get("wecom")
        _, text = markdown(message, mention=f"<@{userid}>" if userid else None, max_bytes=self.MAX_CONTENT_BYTES)
        return {"msgtype": "markdown", "markdown": {"content": text}}

    async def send(self, message: Notification) -> Attempt:
        content = json.dumps(self.body(message), ensure_ascii=False).encode("utf-8")
        return await self.exchange(
            message,
            address="wecom robot",
            url=self._url,
            content=content,
            headers={"Content-Type": "application/json; charset=utf-8"},
            read=lambda response, now: _errcode_verdict(response, self.RETRYABLE),
        )
