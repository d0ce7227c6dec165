"""The service's own alarms, decided from what a round sees (pure: no database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerts.selfcheck import Observation, SelfCheck, SelfCheckParams
from whistle.domain import AlarmKind, DetectionAction
from whistle.heartbeat import Heartbeat
from whistle.timeutil import to_datetime

T0 = 1_795_000_000_000


def beat(role: str, at: int, pid: int = 1, **details: Any) -> Heartbeat:
    started: datetime = to_datetime(T0)
    return Heartbeat(f"h/{pid}/{role}", (role,), "h", pid, started, to_datetime(at), details)


def seen(
    check: SelfCheck, now: int, beats: list[Heartbeat], lag: dict[str, int] | None = None, dl: int = 0
) -> list[tuple[str, str, str]]:
    got = check.observe(Observation(now, beats, lag or {}, dl))
    return [(d.kind.value, d.subject_id, d.action.value) for d in got]


def test_a_role_not_heard_from_is_down_once_and_back_once() -> None:
    c = SelfCheck()
    assert seen(c, T0 + 10_000, [beat("rules", T0), beat("collector", T0 + 9_000)]) == []
    down = seen(c, T0 + 31_000, [beat("rules", T0), beat("collector", T0 + 30_000)])
    assert down == [("system.role_down", "role:rules", "raise")]
    assert seen(c, T0 + 41_000, [beat("rules", T0), beat("collector", T0 + 40_000)]) == []  # still down: once
    back = seen(c, T0 + 51_000, [beat("rules", T0), beat("rules", T0 + 50_000, pid=2), beat("collector", T0 + 50_000)])
    assert back == [("system.role_down", "role:rules", "clear")]


def test_the_raise_carries_the_last_heartbeat_so_two_watchers_raise_the_same_alarm() -> None:
    a, b = SelfCheck(), SelfCheck()
    beats = [beat("collector", T0)]
    (da,) = a.observe(Observation(T0 + 35_000, beats, {}, 0))
    (db,) = b.observe(Observation(T0 + 45_000, beats, {}, 0))
    assert da.detection_id == db.detection_id and da.ts == T0


def test_lag_must_last_before_it_is_an_alarm() -> None:
    c = SelfCheck(SelfCheckParams(lag_records=1000, lag_for_s=60))
    lag = {"whistle-rules.whistle.readings": 5000}
    assert seen(c, T0, [], lag) == []
    assert seen(c, T0 + 59_000, [], lag) == []
    assert seen(c, T0 + 61_000, [], lag) == [("system.lag", "lag:whistle-rules.whistle.readings", "raise")]
    assert seen(c, T0 + 70_000, [], {"whistle-rules.whistle.readings": 10}) == [
        ("system.lag", "lag:whistle-rules.whistle.readings", "clear")
    ]
    c2 = SelfCheck(SelfCheckParams(lag_records=1000, lag_for_s=60))  # a short lag is nothing
    assert seen(c2, T0, [], lag) == [] and seen(c2, T0 + 30_000, [], {}) == []


def test_a_dead_letter_spike_a_full_endpoint_and_a_lost_broker() -> None:
    c = SelfCheck(SelfCheckParams(dead_letters_per_window=100, backlog_for_s=10, broker_down_s=10))
    assert seen(c, T0, [], dl=150) == [("system.dead_letters", "dead_letters", "raise")]
    full = [beat("collector", T0, ingest={"full": True}, mqtt_connected=False)]
    assert seen(c, T0 + 1000, full, dl=150) == []
    got = seen(c, T0 + 11_000, [beat("collector", T0 + 11_000, ingest={"full": True}, mqtt_connected=False)], dl=0)
    assert sorted(got) == [
        ("system.broker_unreachable", "broker", "raise"),
        ("system.dead_letters", "dead_letters", "clear"),
        ("system.ingest_backlog", "ingest", "raise"),
    ]


def test_a_database_outage_ridden_out_is_raised_and_cleared_once_with_its_times() -> None:
    c = SelfCheck()
    outage = {"since": T0, "until": T0 + 60_000}
    beats = [beat("collector", T0 + 65_000, db_outages=[outage, {"since": T0 + 70_000, "until": T0 + 71_000}])]
    got = c.observe(Observation(T0 + 66_000, beats, {}, 0))
    assert [(d.kind, d.action, d.ts) for d in got] == [
        (AlarmKind.SYSTEM_DATABASE, DetectionAction.RAISE, T0),
        (AlarmKind.SYSTEM_DATABASE, DetectionAction.CLEAR, T0 + 60_000),
    ]  # the 1-second blip is not an alarm
    assert c.observe(Observation(T0 + 76_000, beats, {}, 0)) == []
