"""Getting one notification to one person: retries, failover, rate limits, quiet hours, idempotency.

The decisions are pure functions, unit-tested without I/O: `quiet_until` (defer or not),
`take_token` (the per-recipient token bucket), `backoff_delay` and `next_step` (retry, next
channel, defer or give up after an attempt). `Dispatcher` runs them against real channels
with an injectable clock, sleep and randomness, and returns every attempt for the caller to
persist.

Policy (docs/NOTIFICATIONS.md has the reasoning):
- critical and major are never held back by quiet hours; minor and warning are deferred to
  the end of the quiet window;
- critical bypasses the per-recipient rate limit (it still uses a token when there is one);
- critical fails over to the next channel of the route after its attempts on a channel are
  spent; other severities stay on the first channel that can reach the recipient;
- a channel that cannot reach the recipient at all (no phone, no subscription, not
  configured, its hourly budget spent — alerts.caps) is skipped for every severity — that is
  routing, not failover;
- delivered means seen: on a channel that can confirm display (the worker's page over the live
  feed, a tapped push notification), a critical notification handed over is not delivered yet but
  `awaiting_receipt` — the caller (alerts.outbox) waits for the receipt up to the receipt timeout
  and then carries on with the rest of the route.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Protocol

from alerts.channels.base import (
    BUDGET_SPENT,
    EXCEPTION,
    NO_ADDRESS,
    NOT_CONFIGURED,
    TIMEOUT,
    Attempt,
    ChannelNotStarted,
    Notification,
    NotifyChannel,
    describe,
)
from alerts.channels.http import log_attempt
from alerts.channels.settings import DeliverySettings, parse_quiet_hours
from whistle.domain import Severity
from whistle.privacy import redact
from whistle.timeutil import CHINA_TZ, now_ms

log = logging.getLogger("alerts.channels")

CRITICAL_ONLY = frozenset({Severity.CRITICAL})
LOW_SEVERITIES = frozenset({Severity.MINOR, Severity.WARNING})


# --- policy as data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window (local time) in which `applies_to` severities wait; start == end disables it."""

    start: time
    end: time
    tz: tzinfo = CHINA_TZ
    applies_to: frozenset[Severity] = LOW_SEVERITIES


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per recipient: `burst` at once, refilled at `per_hour`; `exempt` never waits."""

    burst: int = 5
    per_hour: float = 20.0
    exempt: frozenset[Severity] = CRITICAL_ONLY


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 30.0
    factor: float = 2.0


@dataclass(frozen=True, slots=True)
class ReceiptPolicy:
    """Which channels say "handed over" before anyone has looked (the page may sit in a pocket or a hidden tab),
    and for which severities a handover counts only once its receipt comes, within `timeout_s`."""

    channels: frozenset[str] = frozenset({"live", "webpush"})
    severities: frozenset[Severity] = CRITICAL_ONLY
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 3  # per channel
    critical_max_attempts: int = 2  # per channel: fail over sooner, there are other channels
    backoff: Backoff = field(default_factory=Backoff)
    attempt_timeout_s: float = 20.0
    failover: frozenset[Severity] = CRITICAL_ONLY
    quiet: QuietHours | None = field(default_factory=lambda: QuietHours(time(22), time(7)))
    rate: RateLimit | None = field(default_factory=RateLimit)
    receipt: ReceiptPolicy | None = field(default_factory=ReceiptPolicy)

    @classmethod
    def from_settings(cls, s: DeliverySettings) -> DeliveryPolicy:
        window = parse_quiet_hours(s.quiet_hours)
        return cls(
            max_attempts=s.max_attempts,
            critical_max_attempts=s.critical_max_attempts,
            backoff=Backoff(base_s=s.backoff_base_s, cap_s=s.backoff_cap_s),
            attempt_timeout_s=s.attempt_timeout_s,
            quiet=QuietHours(window[0], window[1], s.tz) if window else None,
            rate=RateLimit(burst=s.rate_burst, per_hour=s.rate_per_hour),
            receipt=ReceiptPolicy(s.receipt_channel_names, s.receipt_severity_set, s.receipt_timeout_s),
        )

    def attempts_for(self, severity: Severity) -> int:
        return self.critical_max_attempts if severity is Severity.CRITICAL else self.max_attempts


# --- pure decisions ------------------------------------------------------------------------------


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def quiet_until(now: int, severity: Severity, quiet: QuietHours | None) -> int | None:
    """When the quiet window ends (ms) if a notification of `severity` must wait now, else None."""
    if quiet is None or severity not in quiet.applies_to or quiet.start == quiet.end:
        return None
    local = datetime.fromtimestamp(now / 1000, tz=quiet.tz)
    t = local.time()
    today = local.date()
    if quiet.start < quiet.end:  # e.g. 12:00-14:00
        if quiet.start <= t < quiet.end:
            return _ms(datetime.combine(today, quiet.end, tzinfo=quiet.tz))
        return None
    if t >= quiet.start:  # e.g. 22:00-07:00, before midnight
        return _ms(datetime.combine(today + timedelta(days=1), quiet.end, tzinfo=quiet.tz))
    if t < quiet.end:  # after midnight
        return _ms(datetime.combine(today, quiet.end, tzinfo=quiet.tz))
    return None


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at: int  # ms when `tokens` was computed


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    bucket: Bucket
    next_at: int  # when a token is (or was) available


def take_token(bucket: Bucket | None, limit: RateLimit, now: int, *, exempt: bool = False) -> RateDecision:
    """Refill the bucket to `now` and take a token. An exempt notification always passes and
    takes a token only if there is one."""
    rate_per_ms = limit.per_hour / 3_600_000
    if bucket is None:
        tokens = float(limit.burst)
    else:
        tokens = min(float(limit.burst), bucket.tokens + max(0, now - bucket.at) * rate_per_ms)
    if tokens >= 1:
        return RateDecision(True, Bucket(tokens - 1, now), now)
    if exempt:
        return RateDecision(True, Bucket(tokens, now), now)
    wait = (1 - tokens) / rate_per_ms
    return RateDecision(False, Bucket(tokens, now), now + int(wait + 0.999))


def backoff_delay(retry: int, backoff: Backoff, rand: float) -> float:
    """Seconds before retry number `retry` (1 for the first): exponential, capped, with "equal
    jitter" — half fixed, half random — so retries spread out but never come at once."""
    ceiling = min(backoff.cap_s, backoff.base_s * backoff.factor ** max(0, retry - 1))
    return ceiling / 2 + ceiling / 2 * min(max(rand, 0.0), 1.0)


def awaits_receipt(channel: str, severity: Severity, receipt: ReceiptPolicy | None, *, has_next: bool) -> bool:
    """Whether a notification just handed to `channel` must wait for its receipt before it counts: a channel
    that can confirm display, a severity that needs it, and another channel to go to if no receipt comes."""
    return receipt is not None and has_next and channel in receipt.channels and severity in receipt.severities


class StepKind(StrEnum):
    DONE = "done"  # delivered
    RETRY = "retry"  # same channel, after `delay_s`
    NEXT = "next"  # the next channel of the route
    DEFER = "defer"  # stop now; try again at `until`
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    delay_s: float = 0.0
    until: int | None = None


def next_step(
    attempt: Attempt,
    *,
    tries: int,
    severity: Severity,
    policy: DeliveryPolicy,
    has_next: bool,
    now: int,
    rand: float,
) -> Step:
    """What to do after `attempt`, the `tries`-th on its channel."""
    if attempt.ok:
        return Step(StepKind.DONE)
    if attempt.code in (NO_ADDRESS, NOT_CONFIGURED, BUDGET_SPENT):
        return Step(StepKind.NEXT) if has_next else Step(StepKind.GIVE_UP)
    failover = severity in policy.failover
    if attempt.retryable and tries < policy.attempts_for(severity):
        delay = backoff_delay(tries, policy.backoff, rand)
        if attempt.retry_after_ms is not None:
            wait = attempt.retry_after_ms / 1000
            if wait > policy.backoff.cap_s:  # the provider will not take it soon
                if failover:
                    return Step(StepKind.NEXT) if has_next else Step(StepKind.GIVE_UP)
                return Step(StepKind.DEFER, until=now + attempt.retry_after_ms)
            delay = max(delay, wait)
        return Step(StepKind.RETRY, delay_s=delay)
    if failover and has_next:
        return Step(StepKind.NEXT)
    return Step(StepKind.GIVE_UP)


# --- idempotency ---------------------------------------------------------------------------------


class SentLog(Protocol):
    """Which notification ids are delivered (or being delivered). Back it with PostgreSQL to make
    "at most once per id" hold across processes and restarts."""

    async def claim(self, notification_id: str) -> bool:
        """True if the caller may deliver it now: not delivered, and nobody else is delivering it."""
        ...

    async def delivered(self, notification_id: str, *, channel: str, at: int) -> None:
        """Record the delivery; later claims of the id fail."""
        ...

    async def release(self, notification_id: str) -> None:
        """Give a claim back without delivering (failed or deferred): a later claim may succeed."""
        ...


class MemorySentLog:
    """The in-process `SentLog`: remembers the last `capacity` delivered ids."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._delivered: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._in_flight: set[str] = set()
        self._capacity = capacity

    async def claim(self, notification_id: str) -> bool:
        if notification_id in self._delivered or notification_id in self._in_flight:
            return False
        self._in_flight.add(notification_id)
        return True

    async def delivered(self, notification_id: str, *, channel: str, at: int) -> None:
        self._in_flight.discard(notification_id)
        self._delivered[notification_id] = (channel, at)
        while len(self._delivered) > self._capacity:
            self._delivered.popitem(last=False)

    async def release(self, notification_id: str) -> None:
        self._in_flight.discard(notification_id)

    def channel_of(self, notification_id: str) -> str | None:
        entry = self._delivered.get(notification_id)
        return entry[0] if entry else None


# --- the dispatcher ------------------------------------------------------------------------------


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    DEFERRED = "deferred"  # not sent yet: call again at `deferred_until`
    DUPLICATE = "duplicate"  # this id was already delivered, or is being delivered
    AWAITING_RECEIPT = "awaiting_receipt"  # handed to `channel`; seen only once its receipt comes (by `receipt_due`)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of `Dispatcher.deliver`, with every attempt made (for the caller to store)."""

    notification_id: str
    status: DeliveryStatus
    attempts: tuple[Attempt, ...] = ()
    channel: str | None = None
    deferred_until: int | None = None
    reason: str | None = None  # quiet_hours, rate_limited, provider_rate_limited, no_route, all_failed
    receipt_due: int | None = None  # AWAITING_RECEIPT: when to carry on with the rest of the route without one


Sleep = Callable[[float], Awaitable[None]]


class Dispatcher:
    """Delivers a notification over a recipient's ordered channels under a `DeliveryPolicy`."""

    def __init__(
        self,
        channels: Mapping[str, NotifyChannel],
        *,
        policy: DeliveryPolicy | None = None,
        sent_log: SentLog | None = None,
        clock: Callable[[], int] = now_ms,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.channels = channels
        self.policy = policy or DeliveryPolicy()
        self.sent_log: SentLog = sent_log or MemorySentLog()
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._buckets: dict[str, Bucket] = {}

    async def deliver(self, message: Notification, route: Sequence[str]) -> Delivery:
        """Deliver `message` at most once (by id), trying `route`'s channels in order."""
        if not await self.sent_log.claim(message.id):
            log.info("notify %s: duplicate, not sent again", describe(message))
            return Delivery(message.id, DeliveryStatus.DUPLICATE, reason="duplicate")
        result: Delivery | None = None
        try:
            result = await self._deliver(message, list(dict.fromkeys(route)))
            return result
        finally:
            if result is not None and result.status is DeliveryStatus.DELIVERED and result.channel:
                await self.sent_log.delivered(message.id, channel=result.channel, at=self._clock())
            else:
                await self.sent_log.release(message.id)

    async def _deliver(self, message: Notification, route: list[str]) -> Delivery:
        now = self._clock()
        until = quiet_until(now, message.severity, self.policy.quiet)
        if until is not None:
            log.info("notify %s: quiet hours, deferred", describe(message))
            return Delivery(message.id, DeliveryStatus.DEFERRED, deferred_until=until, reason="quiet_hours")
        if self.policy.rate is not None:
            rate = self.policy.rate
            key = message.recipient.id
            decision = take_token(self._buckets.get(key), rate, now, exempt=message.severity in rate.exempt)
            self._buckets[key] = decision.bucket
            if not decision.allowed:
                log.info("notify %s: recipient rate limit, deferred", describe(message))
                return Delivery(
                    message.id, DeliveryStatus.DEFERRED, deferred_until=decision.next_at, reason="rate_limited"
                )
        if not route:
            return Delivery(message.id, DeliveryStatus.FAILED, reason="no_route")

        attempts: list[Attempt] = []
        for index, name in enumerate(route):
            has_next = index + 1 < len(route)
            tries = 0
            while True:
                tries += 1
                attempt = await self._try(name, message)
                attempts.append(attempt)
                step = next_step(
                    attempt,
                    tries=tries,
                    severity=message.severity,
                    policy=self.policy,
                    has_next=has_next,
                    now=self._clock(),
                    rand=self._rand(),
                )
                if step.kind is StepKind.DONE:
                    receipt = self.policy.receipt
                    later = any(c in self.channels for c in route[index + 1 :])  # a channel to fall over to
                    if receipt is not None and awaits_receipt(name, message.severity, receipt, has_next=later):
                        log.info("notify %s: handed to %s, awaiting its receipt", describe(message), name)
                        return Delivery(
                            message.id,
                            DeliveryStatus.AWAITING_RECEIPT,
                            tuple(attempts),
                            channel=name,
                            reason="awaiting_receipt",
                            receipt_due=self._clock() + int(receipt.timeout_s * 1000),
                        )
                    return Delivery(message.id, DeliveryStatus.DELIVERED, tuple(attempts), channel=name)
                if step.kind is StepKind.RETRY:
                    await self._sleep(step.delay_s)
                    continue
                if step.kind is StepKind.DEFER:
                    return Delivery(
                        message.id,
                        DeliveryStatus.DEFERRED,
                        tuple(attempts),
                        deferred_until=step.until,
                        reason="provider_rate_limited",
                    )
                break  # NEXT or GIVE_UP
            if step.kind is StepKind.GIVE_UP:
                break
        log.warning("notify %s: not delivered after %d attempts", describe(message), len(attempts))
        return Delivery(message.id, DeliveryStatus.FAILED, tuple(attempts), reason="all_failed")

    async def _try(self, name: str, message: Notification) -> Attempt:
        channel = self.channels.get(name)
        at = self._clock()
        if channel is None:
            attempt = Attempt(
                channel=name,
                notification_id=message.id,
                ok=False,
                retryable=False,
                code=NOT_CONFIGURED,
                error=f"channel {name!r} is not configured",
                at=at,
            )
            log_attempt(attempt, message)
            return attempt
        try:
            async with asyncio.timeout(self.policy.attempt_timeout_s):
                return await channel.send(message)
        except TimeoutError:
            code, retryable, error = TIMEOUT, True, f"no answer within {self.policy.attempt_timeout_s}s"
        except ChannelNotStarted as exc:
            code, retryable, error = EXCEPTION, False, str(exc)
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}") or ""
            log.error("notify %s: channel %s raised %s", describe(message), name, error)
            log.debug("traceback of the channel error", exc_info=True)
            code, retryable = EXCEPTION, True
        attempt = Attempt(
            channel=name,
            notification_id=message.id,
            ok=False,
            retryable=retryable,
            code=code,
            error=redact(error),
            at=at,
            latency_ms=float(self._clock() - at),
        )
        log_attempt(attempt, message)
        return attempt
