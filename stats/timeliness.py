"""On time or not, against the escalation policy a ticket froze when it was created.

A grid worker is assessed (扶余: by count and timeliness, every quarter) against the same clock
that escalates their tickets. The deadline for a milestone is the first step of the policy that
would call someone *other than the assignee* because the ticket has not yet reached that
milestone (`unless`): for a critical ticket the backup and the grid leader after 180 s without an
acknowledgement, the street center after 900 s without arrival; for a lone elder's ticket whose
emergency contact is called first, 300 s later. A step that only (re)notifies the assignee is not
a deadline: the assignee has not been asked yet. No such step, no deadline (warnings, the arrival
of minor tickets): those tickets are counted, not assessed.

Deadlines run from the ticket's escalation base (its creation, or its last reassignment, which
gives the new assignee a fresh clock). The first response is the earliest of acknowledgement,
arrival and resolution (a worker who goes straight to the scene has answered). A ticket is assessed
for a milestone once it reached it or its deadline passed; one resolved before its deadline
without reaching the milestone (a nuisance alarm closed by phone) is not assessed for it.

The SQL twin of `deadlines` is `whistle_policy_due_s` (migration 0020), which fills
`tickets.ack_due_s` and `tickets.arrive_due_s`; tests keep the two in agreement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alerts.escalation import EscalationPolicy
from alerts.routing import Target
from whistle.domain import TicketStatus


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds after the escalation base by which a ticket should be acknowledged and on site (None: no deadline)."""

    ack_s: int | None
    arrive_s: int | None


def _due(policy: EscalationPolicy, milestone: TicketStatus) -> int | None:
    times = [s.after_s for s in policy.steps if s.unless is milestone and Target.ASSIGNEE not in s.notify]
    return min(times) if times else None


def deadlines(policy: EscalationPolicy | Mapping[str, Any]) -> Deadlines:
    """The acknowledgement and arrival deadlines of a frozen policy (a policy or its JSON)."""
    p = policy if isinstance(policy, EscalationPolicy) else EscalationPolicy.from_json(policy)
    return Deadlines(_due(p, TicketStatus.ACKNOWLEDGED), _due(p, TicketStatus.ON_SITE))
