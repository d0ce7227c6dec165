"""The pure delivery decisions: quiet hours, the token bucket, backoff, and the step after an attempt."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from alerts.channels.base import NO_ADDRESS, NOT_CONFIGURED, Attempt
from alerts.channels.delivery import (
    Backoff,
    Bucket,
    DeliveryPolicy,
    QuietHours,
    RateLimit,
    Step,
    StepKind,
    backoff_delay,
    next_step,
    quiet_until,
    take_token,
)
from alerts.channels.settings import DeliverySettings
from whistle.domain import Severity

CST = timezone(timedelta(hours=8))
NIGHT = QuietHours(time(22), time(7))


def at(day: int, hour: int, minute: int = 0) -> int:
    return int(datetime(2026, 11, day, hour, minute, tzinfo=CST).timestamp() * 1000)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (at(24, 21, 59), None),
        (at(24, 22, 0), at(25, 7)),
        (at(24, 23, 30), at(25, 7)),
        (at(25, 0, 10), at(25, 7)),
        (at(25, 6, 59), at(25, 7)),
        (at(25, 7, 0), None),
        (at(25, 12, 0), None),
    ],
)
def test_quiet_hours_across_midnight(now: int, until: int | None) -> None:
    assert quiet_until(now, Severity.WARNING, NIGHT) == until
    assert quiet_until(now, Severity.MINOR, NIGHT) == until


@pytest.mark.parametrize("severity", [Severity.CRITICAL, Severity.MAJOR])
def test_quiet_hours_never_hold_critical_or_major(severity: Severity) -> None:
    assert quiet_until(at(25, 3), severity, NIGHT) is None


def test_quiet_hours_within_a_day_and_disabled() -> None:
    lunch = QuietHours(time(12), time(14))
    assert quiet_until(at(24, 13), Severity.WARNING, lunch) == at(24, 14)
    assert quiet_until(at(24, 14), Severity.WARNING, lunch) is None
    assert quiet_until(at(24, 11, 59), Severity.WARNING, lunch) is None
    assert quiet_until(at(25, 3), Severity.WARNING, QuietHours(time(7), time(7))) is None
    assert quiet_until(at(25, 3), Severity.WARNING, None) is None


def test_quiet_hours_follow_the_configured_time_zone() -> None:
    utc_night = QuietHours(time(22), time(7), UTC)
    # 06:30 in Shanghai is 22:30 UTC the day before: quiet in UTC until 07:00 UTC = 15:00 in Shanghai.
    assert quiet_until(at(25, 6, 30), Severity.WARNING, utc_night) == at(25, 15)


def test_token_bucket_allows_a_burst_then_refills() -> None:
    limit = RateLimit(burst=3, per_hour=60)  # a token a minute
    bucket = None
    now = at(24, 10)
    for _ in range(3):
        d = take_token(bucket, limit, now)
        assert d.allowed
        bucket = d.bucket
    refused = take_token(bucket, limit, now)
    assert not refused.allowed and refused.next_at == now + 60_000
    assert not take_token(refused.bucket, limit, now + 59_000).allowed
    later = take_token(refused.bucket, limit, now + 60_000)
    assert later.allowed and later.bucket.tokens == pytest.approx(0)
    full = take_token(Bucket(0, now), limit, now + 10 * 3_600_000)
    assert full.bucket.tokens == pytest.approx(2)  # capped at the burst, minus the one taken


def test_exempt_notifications_pass_an_empty_bucket_and_spend_what_is_there() -> None:
    limit = RateLimit(burst=1, per_hour=60)
    now = at(24, 10)
    first = take_token(None, limit, now, exempt=True)
    assert first.allowed and first.bucket.tokens == 0
    second = take_token(first.bucket, limit, now, exempt=True)
    assert second.allowed and second.bucket.tokens == 0
    assert not take_token(second.bucket, limit, now).allowed


def test_backoff_is_exponential_capped_and_jittered_within_half() -> None:
    b = Backoff(base_s=1, cap_s=8)
    assert [backoff_delay(n, b, 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert [backoff_delay(n, b, 0.0) for n in range(1, 5)] == [0.5, 1, 2, 4]
    assert backoff_delay(3, b, 0.5) == 3.0


def attempt(ok: bool = False, retryable: bool = True, code: str = "500", retry_after_ms: int | None = None) -> Attempt:
    return Attempt("c", "n", ok=ok, retryable=retryable, code=code, retry_after_ms=retry_after_ms)


POLICY = DeliveryPolicy(max_attempts=3, critical_max_attempts=2, backoff=Backoff(base_s=1, cap_s=30))


def step(a: Attempt, tries: int, severity: Severity, has_next: bool = True) -> Step:
    return next_step(a, tries=tries, severity=severity, policy=POLICY, has_next=has_next, now=1000, rand=1.0)


def test_delivered_is_done() -> None:
    assert step(attempt(ok=True), 1, Severity.WARNING).kind is StepKind.DONE


def test_retry_until_attempts_are_spent_then_failover_only_for_critical() -> None:
    assert step(attempt(), 1, Severity.MAJOR) == Step(StepKind.RETRY, delay_s=1.0)
    assert step(attempt(), 2, Severity.MAJOR) == Step(StepKind.RETRY, delay_s=2.0)
    assert step(attempt(), 3, Severity.MAJOR).kind is StepKind.GIVE_UP
    assert step(attempt(), 1, Severity.CRITICAL).kind is StepKind.RETRY
    assert step(attempt(), 2, Severity.CRITICAL).kind is StepKind.NEXT
    assert step(attempt(), 2, Severity.CRITICAL, has_next=False).kind is StepKind.GIVE_UP


def test_a_permanent_failure_is_not_retried() -> None:
    assert step(attempt(retryable=False), 1, Severity.CRITICAL).kind is StepKind.NEXT
    assert step(attempt(retryable=False), 1, Severity.MINOR).kind is StepKind.GIVE_UP


@pytest.mark.parametrize("code", [NO_ADDRESS, NOT_CONFIGURED])
@pytest.mark.parametrize("severity", list(Severity))
def test_unreachable_channels_are_skipped_for_every_severity(code: str, severity: Severity) -> None:
    assert step(attempt(retryable=False, code=code), 1, severity).kind is StepKind.NEXT
    assert step(attempt(retryable=False, code=code), 1, severity, has_next=False).kind is StepKind.GIVE_UP


def test_a_short_retry_after_stretches_the_backoff() -> None:
    assert step(attempt(retry_after_ms=7_000), 1, Severity.MAJOR) == Step(StepKind.RETRY, delay_s=7.0)


def test_a_long_retry_after_defers_low_severities_and_fails_critical_over() -> None:
    limited = attempt(retry_after_ms=60_000)
    assert step(limited, 1, Severity.MINOR) == Step(StepKind.DEFER, until=61_000)
    assert step(limited, 1, Severity.CRITICAL).kind is StepKind.NEXT
    assert step(limited, 1, Severity.CRITICAL, has_next=False).kind is StepKind.GIVE_UP


def test_policy_from_settings() -> None:
    s = DeliverySettings(quiet_hours="23:30-06:00", rate_burst=2, rate_per_hour=10, max_attempts=4)
    policy = DeliveryPolicy.from_settings(s)
    assert policy.quiet is not None and (policy.quiet.start, policy.quiet.end) == (time(23, 30), time(6))
    assert policy.rate == RateLimit(burst=2, per_hour=10)
    assert policy.max_attempts == 4 and policy.critical_max_attempts == 2
    assert DeliveryPolicy.from_settings(DeliverySettings(quiet_hours="off")).quiet is None
    with pytest.raises(ValueError, match="quiet hours"):
        DeliverySettings(quiet_hours="late")
