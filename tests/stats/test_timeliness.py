"""Deadlines from frozen policies: the pure rule, and its SQL twin that fills tickets.ack_due_s / arrive_due_s."""

from __future__ import annotations

import json

import pytest

from alerts.escalation import DEFAULT_POLICIES, policy_for
from stats.timeliness import Deadlines, deadlines
from tests.stats.conftest import Evening
from whistle.domain import AlarmKind, Severity


@pytest.mark.parametrize(
    ("kind", "severity", "has_contact", "expected"),
    [
        (AlarmKind.SMOKE_FIRE, Severity.CRITICAL, False, Deadlines(180, 900)),
        (AlarmKind.ELEVATOR_FAULT, Severity.MAJOR, False, Deadlines(900, 3600)),
        (AlarmKind.GROUP_RENTAL_SUSPECTED, Severity.MINOR, False, Deadlines(14400, None)),
        (AlarmKind.DEVICE_OFFLINE, Severity.WARNING, False, Deadlines(None, None)),
        # the contact is called first; the grid worker 300 s later, and the deadlines move with it
        (AlarmKind.LONE_ELDER_INACTIVE, Severity.MAJOR, True, Deadlines(1200, 3900)),
    ],
)
def test_deadlines_are_the_first_step_past_the_assignee(
    kind: AlarmKind, severity: Severity, has_contact: bool, expected: Deadlines
) -> None:
    policy = policy_for(kind, severity, has_contact=has_contact)
    assert deadlines(policy) == expected
    assert deadlines(policy.to_json()) == expected


async def test_the_database_reads_the_same_deadlines_from_every_policy(evening: Evening) -> None:
    policies = [p.to_json() for p in DEFAULT_POLICIES.values()]
    policies.append(policy_for(AlarmKind.LONE_ELDER_INACTIVE, Severity.MAJOR, has_contact=True).to_json())
    policies.append(policy_for(AlarmKind.ELEVATOR_TRAPPED, Severity.CRITICAL).to_json())
    async with evening.db.connection() as conn:
        for p in [*policies, {}, {"steps": "nonsense"}]:
            cur = await conn.execute(
                "SELECT whistle_policy_due_s(%(p)s::jsonb, 'acknowledged'), whistle_policy_due_s(%(p)s::jsonb, "
                "'on_site')",
                {"p": json.dumps(p)},
            )
            got = await cur.fetchone()
            want = deadlines(p) if p.get("steps") and isinstance(p["steps"], list) else Deadlines(None, None)
            assert got == (want.ack_s, want.arrive_s), p
        # and the generated columns of the evening's tickets hold them
        cur = await conn.execute("SELECT kind, ack_due_s, arrive_due_s FROM tickets ORDER BY created_at")
        assert await cur.fetchall() == [
            ("smoke.fire", 180, 900),
            ("smoke.fire", 180, 900),
            ("elevator.fault", 900, 3600),
            ("device.offline", None, None),
            ("smoke.fire", 180, 900),
        ]
