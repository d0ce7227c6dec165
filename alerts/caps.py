"""Notification caps: at most so many notifications per recipient per hour, and SMS per hour in all.

Grouping (alerts.storms) keeps one cause to one ticket; the caps are the backstop when many causes
arrive at once, or a grouping misses: nobody's phone rings more than `recipient_per_hour` times an
hour, and the street's SMS bill stops at `sms_per_hour` messages an hour (Aliyun and Tencent charge
per message, about 0.045 CNY). Each use is counted in PostgreSQL (`notification_usage`, one row per
scope and clock hour, incremented atomically under the cap), so the caps hold across every sender
process; a use whose delivery fails is given back.

What is over a cap: a recipient's notification is dropped (the outbox row becomes `suppressed`,
"capped") — the ticket itself stands, in the worker's list and on the screens; an SMS is skipped as
a channel that cannot reach the recipient this hour, so the notification goes on to the next channel
of its route. The first time a cap stops something in an hour, `system.notification_cap` (major) is
raised to the operations center (the street center) once per scope and hour.

Never capped: the life-safety kinds (`smoke.fire`, `elevator.trapped`) and the system's own
`system.*` alarms — they are counted, so they use up the budget, but never held back by it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alerts.channels.base import BUDGET_SPENT, Attempt, Notification, NotifyChannel
from whistle.domain import LIFE_SAFETY_KINDS, AlarmKind, Detection, Severity, SubjectType
from whistle.store.db import Database
from whistle.timeutil import HOUR_MS, format_ms, now_ms, to_datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caps:
    """The limits; 0 means no cap."""

    recipient_per_hour: int = 20
    sms_per_hour: int = 200


@dataclass(frozen=True, slots=True)
class Use:
    """One counted use: its scope and the hour it was counted in (to give it back)."""

    scope: str
    window: int


@dataclass(frozen=True, slots=True)
class CapHit:
    """A cap that stopped a notification: which scope, its limit, the hour, and what it stopped."""

    scope: str
    cap: int
    window: int
    kind: AlarmKind
    at: int


def exempt(kind: AlarmKind) -> bool:
    """Life-safety kinds and the system's own alarms are never held back by a cap."""
    return kind in LIFE_SAFETY_KINDS or kind.value.startswith("system.")


def cap_detection(hit: CapHit) -> Detection:
    """The `system.notification_cap` alarm for a cap hit: one per scope while it keeps being hit."""
    what = "SMS per hour, all recipients" if hit.scope == "sms" else "notifications per hour to one recipient"
    return Detection(
        kind=AlarmKind.SYSTEM_NOTIFICATION_CAP,
        severity=Severity.MAJOR,
        subject_type=SubjectType.SYSTEM,
        subject_id=hit.scope,
        ts=hit.at,
        evidence={
            "scope": hit.scope,
            "cap": hit.cap,
            "limit": what,
            "hour": format_ms(hit.window),
            "stopped_kind": hit.kind.value,
        },
        source_id=f"{hit.scope}:{hit.window}",
    )


OnCap = Callable[[CapHit], Awaitable[object]]


class NotificationCaps:
    """Counts uses per scope and hour in PostgreSQL and says whether one more may go."""

    def __init__(
        self,
        db: Database,
        caps: Caps,
        *,
        on_cap: OnCap | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.db = db
        self.caps = caps
        self.on_cap = on_cap
        self.clock = clock
        self.capped = 0
        self._reported: set[tuple[str, int]] = set()

    async def _take(self, scope: str, cap: int, kind: AlarmKind) -> Use | None:
        now = self.clock()
        window = now - now % HOUR_MS
        if cap <= 0:
            return Use(scope, window)
        free = exempt(kind)
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO notification_usage (scope, window_start, used) VALUES (%s, %s, 1) "
                "ON CONFLICT (scope, window_start) DO UPDATE SET used = notification_usage.used + 1 "
                "WHERE %s OR notification_usage.used < %s RETURNING used",
                (scope, to_datetime(window), free, cap),
            )
            row = await cur.fetchone()
        if row is not None:
            return Use(scope, window)
        self.capped += 1
        await self._report(CapHit(scope, cap, window, kind, now))
        return None

    async def _report(self, hit: CapHit) -> None:
        key = (hit.scope, hit.window)
        if key in self._reported or self.on_cap is None:
            return
        if len(self._reported) > 10_000:
            self._reported = {k for k in self._reported if k[1] >= hit.window}
        self._reported.add(key)  # before the await: concurrent hits of one scope raise it once
        try:
            await self.on_cap(hit)
        except Exception:  # the alarm is best effort; the cap itself already held
            log.exception("could not raise system.notification_cap for %s", hit.scope)
            self._reported.discard(key)

    async def admit(self, recipient_id: str, kind: AlarmKind) -> Use | None:
        """Count a notification to `recipient_id`; None if its hourly cap is reached (and `kind` is not exempt)."""
        return await self._take(f"recipient:{recipient_id}", self.caps.recipient_per_hour, kind)

    async def spend_sms(self, kind: AlarmKind) -> Use | None:
        """Count one SMS; None if the hourly SMS budget is spent (and `kind` is not exempt)."""
        return await self._take("sms", self.caps.sms_per_hour, kind)

    async def give_back(self, use: Use) -> None:
        """A counted use that did not happen (the delivery failed or was deferred)."""
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE notification_usage SET used = GREATEST(used - 1, 0) WHERE scope = %s AND window_start = %s",
                (use.scope, to_datetime(use.window)),
            )

    async def used(self, scope: str, at: int | None = None) -> int:
        """Uses counted for `scope` in the hour of `at` (now)."""
        t = self.clock() if at is None else at
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT used FROM notification_usage WHERE scope = %s AND window_start = %s",
                (scope, to_datetime(t - t % HOUR_MS)),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0


class BudgetedSms:
    """An SMS channel under the hourly SMS budget: over it, it answers `budget_spent` without sending,
    and the dispatcher goes on to the next channel of the route."""

    def __init__(self, inner: NotifyChannel, caps: NotificationCaps) -> None:
        self.inner = inner
        self.caps = caps

    @property
    def name(self) -> str:
        return self.inner.name

    async def send(self, message: Notification) -> Attempt:
        use = await self.caps.spend_sms(message.kind)
        if use is None:
            return Attempt(
                self.name,
                message.id,
                ok=False,
                retryable=False,
                code=BUDGET_SPENT,
                error="the hourly SMS budget is spent",
                at=self.caps.clock(),
            )
        attempt = await self.inner.send(message)
        if not attempt.ok:
            await self.caps.give_back(use)  # a refused or failed SMS is not billed
        return attempt
