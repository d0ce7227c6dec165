"""The part every HTTP channel shares: an httpx client with a lifecycle, timing, and error classes."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx

from alerts.channels.base import (
    NO_ADDRESS,
    TIMEOUT,
    TRANSPORT,
    Attempt,
    ChannelNotStarted,
    Notification,
    describe,
)
from whistle.privacy import redact
from whistle.timeutil import now_ms

log = logging.getLogger("alerts.channels")

USER_AGENT = "digital-whistle/0.1 (+notifications)"


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a channel reads a provider's response: the part of an `Attempt` that is the provider's."""

    ok: bool
    retryable: bool
    code: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    retry_after_ms: int | None = None
    gone: tuple[str, ...] = ()


def retryable_status(status: int) -> bool:
    """HTTP statuses worth trying again: timeouts, too early, rate limits, server errors."""
    return status in (408, 425, 429) or status >= 500


def retry_after_ms(headers: Mapping[str, str], now: int) -> int | None:
    """Retry-After (seconds or an HTTP date) in milliseconds from now, if the response has one."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(when.timestamp() * 1000) - now)


def status_verdict(response: httpx.Response, now: int) -> Verdict:
    """A verdict from the status alone, for providers that say everything with it (webhooks)."""
    status = response.status_code
    if 200 <= status < 300:
        return Verdict(ok=True, retryable=False, code=str(status))
    return Verdict(
        ok=False,
        retryable=retryable_status(status),
        code=str(status),
        error=f"HTTP {status}: {response.text[:200]}",
        retry_after_ms=retry_after_ms(response.headers, now),
    )


class HttpChannel:
    """Base of the HTTP channels: `start()` opens the client, `stop()` (idempotent) closes it."""

    def __init__(
        self,
        name: str,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = name
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise ChannelNotStarted(f"channel {self._name} is not started")
        return self._client

    async def exchange(
        self,
        message: Notification,
        *,
        address: str,
        url: str,
        content: bytes,
        headers: Mapping[str, str],
        read: Callable[[httpx.Response, int], Verdict],
    ) -> Attempt:
        """POST once, time it, and turn the response (or the failure to get one) into an `Attempt`."""
        client = self.client
        at = self._clock()
        started = time.perf_counter()
        status: int | None = None
        try:
            response = await client.post(url, content=content, headers=dict(headers))
            status = response.status_code
            try:
                verdict = read(response, at)
            except ValueError as exc:  # a body that is not what the provider documents
                verdict = Verdict(
                    ok=False, retryable=retryable_status(status), code=str(status), error=f"unreadable response: {exc}"
                )
        except httpx.TimeoutException as exc:
            # The request may have reached the provider: a retry can duplicate the message, which
            # for an alarm is better than silence.
            verdict = Verdict(ok=False, retryable=True, code=TIMEOUT, error=f"{type(exc).__name__}")
        except httpx.HTTPError as exc:
            verdict = Verdict(ok=False, retryable=True, code=TRANSPORT, error=f"{type(exc).__name__}: {exc}")
        latency = (time.perf_counter() - started) * 1000
        attempt = Attempt(
            channel=self._name,
            notification_id=message.id,
            ok=verdict.ok,
            retryable=verdict.retryable,
            address=address,
            status=status,
            code=verdict.code,
            provider_message_id=verdict.provider_message_id,
            error=redact(verdict.error),
            latency_ms=round(latency, 1),
            at=at,
            retry_after_ms=verdict.retry_after_ms,
            gone=verdict.gone,
        )
        log_attempt(attempt, message)
        return attempt


def log_attempt(attempt: Attempt, message: Notification) -> None:
    """One masked line per attempt."""
    # No address on this channel (or not configured) is a skip, not a failure: not worth a warning each time.
    skipped = attempt.code in (NO_ADDRESS, "not_configured")
    level = logging.INFO if attempt.ok or skipped else logging.WARNING
    log.log(
        level,
        "notify %s via %s to %s: ok=%s retryable=%s status=%s code=%s %.0fms%s",
        describe(message),
        attempt.channel,
        attempt.address,
        attempt.ok,
        attempt.retryable,
        attempt.status,
        attempt.code,
        attempt.latency_ms,
        f" error={attempt.error}" if attempt.error else "",
    )
