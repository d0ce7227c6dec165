from __future__ import annotations

import pytest

from whistle.registers import RegisterPoint, Usage, advance, usage

H = 3_600_000


def test_first_reading_has_no_delta() -> None:
    assert usage(None, 1000, 5.0) == Usage(None, None)


def test_delta_over_the_interval() -> None:
    u = usage(RegisterPoint(0, 10.0), 900_000, 10.25)
    assert u == Usage(pytest.approx(0.25), 900_000)  # type: ignore[arg-type]


def test_register_going_down_is_a_reset_never_negative_use() -> None:
    assert usage(RegisterPoint(0, 1234.5), 900_000, 0.3) == Usage(None, 900_000, reset=True)


def test_rounding_jitter_is_no_use_not_a_reset() -> None:
    assert usage(RegisterPoint(0, 1000.0), 900_000, 1000.0 - 1e-7) == Usage(0.0, 900_000)


def test_long_interval_is_flagged_as_a_gap_but_keeps_its_delta() -> None:
    u = usage(RegisterPoint(0, 10.0), 3 * H, 11.0)
    assert (u.delta, u.interval_ms, u.gap) == (1.0, 3 * H, True)
    assert usage(RegisterPoint(0, 10.0), 3 * H, 11.0, max_gap_ms=4 * H).gap is False


def test_late_and_same_time_readings_have_no_delta() -> None:
    assert usage(RegisterPoint(5000, 10.0), 4000, 9.0) == Usage(None, None, late=True)
    assert usage(RegisterPoint(5000, 10.0), 5000, 10.0) == Usage(None, None, late=True)


def test_advance_never_moves_back() -> None:
    p = RegisterPoint(5000, 10.0)
    assert advance(p, 4000, 9.0) is p
    assert advance(p, 6000, 10.5) == RegisterPoint(6000, 10.5)
    assert advance(None, 1, 2.0) == RegisterPoint(1, 2.0)
