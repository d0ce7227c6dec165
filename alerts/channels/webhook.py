"""A generic signed JSON webhook, for a district's own dispatch or messaging system.

Headers: `X-Whistle-Signature: sha256=<hex HMAC-SHA256 of the body>`, `X-Whistle-Timestamp`
(Unix seconds, also `sent_at` inside the signed body so the signature covers it) and
`Idempotency-Key` (the notification id: the same id is one notification, however often sent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from alerts.channels.base import Attempt, Notification
from alerts.channels.http import HttpChannel, status_verdict
from alerts.channels.settings import WebhookSettings
from alerts.channels.signing import webhook_signature
from whistle.privacy import mask_name, mask_phone
from whistle.timeutil import now_ms


class WebhookChannel(HttpChannel):
    """POSTs the notification as JSON; any 2xx is delivered, 408/425/429/5xx are retried."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        name: str = "webhook",
        clock: Callable[[], int] = now_ms,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, timeout_s=settings.timeout_s, clock=clock, transport=transport)
        if not settings.url or settings.secret is None:
            raise ValueError("the webhook needs a URL and a secret")
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("WHISTLE_WEBHOOK_URL is not an http(s) URL")
        self._url = settings.url
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._secret = settings.secret.get_secret_value()
        self._include_contact = settings.include_contact

    def document(self, message: Notification, sent_at: int) -> dict[str, Any]:
        r = message.recipient
        recipient: dict[str, Any] = {"id": r.id}
        if self._include_contact:
            recipient.update(name=r.name, phone=r.phone)
        else:
            recipient.update(name=mask_name(r.name), phone=mask_phone(r.phone) if r.phone else None)
        return {**message.document(), "sent_at": sent_at, "recipient": recipient}

    def request(self, message: Notification) -> tuple[dict[str, str], bytes]:
        """(headers, body) of the signed request."""
        sent_at = self._clock() // 1000
        body = json.dumps(self.document(message, sent_at), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Whistle-Event": "notification",
            "X-Whistle-Timestamp": str(sent_at),
            "X-Whistle-Signature": webhook_signature(self._secret, body),
            "Idempotency-Key": message.id,
        }
        return headers, body

    async def send(self, message: Notification) -> Attempt:
        headers, body = self.request(message)
        return await self.exchange(
            message, address=self._origin, url=self._url, content=body, headers=headers, read=status_verdict
        )
