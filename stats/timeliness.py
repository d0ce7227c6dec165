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


# Per ticket: the escalation base, the first response, both deadlines, and whether each milestone is
# met, late (past its deadline without it, or reached after it) or pending. A late ticket whose alarms
# had all cleared by the deadline is exempt: its policy would have stopped escalating (next_step).
TICKET_TIMELINESS = """
    SELECT t.*, b.base, b.response, d.ack_due, d.arrive_due,
        COALESCE(b.response <= d.ack_due, false) AS ack_met,
        COALESCE(t.arrived_at <= d.arrive_due, false) AS arrive_met,
        CASE WHEN b.response <= d.ack_due THEN true
             WHEN d.ack_due IS NOT NULL AND COALESCE(b.response, %(now)s) > d.ack_due THEN EXISTS (
                 SELECT 1 FROM ticket_alarms ta JOIN alarms a ON a.id = ta.alarm_id
                 WHERE ta.ticket_id = t.id AND (a.cleared_at IS NULL OR a.cleared_at > d.ack_due))
             ELSE false END AS ack_assessed,
        CASE WHEN t.arrived_at <= d.arrive_due THEN true
             WHEN d.arrive_due IS NOT NULL AND COALESCE(t.arrived_at, t.resolved_at, %(now)s) > d.arrive_due
             THEN EXISTS (
                 SELECT 1 FROM ticket_alarms ta JOIN alarms a ON a.id = ta.alarm_id
                 WHERE ta.ticket_id = t.id AND (a.cleared_at IS NULL OR a.cleared_at > d.arrive_due))
             ELSE false END AS arrive_assessed
    FROM tickets t
    CROSS JOIN LATERAL (SELECT COALESCE(t.escalation_base_at, t.created_at) AS base,
                               COALESCE(t.acknowledged_at, t.arrived_at, t.resolved_at) AS response) b
    CROSS JOIN LATERAL (SELECT b.base + make_interval(secs => t.ack_due_s) AS ack_due,
                               b.base + make_interval(secs => t.arrive_due_s) AS arrive_due) d
"""

# What the assessment adds up over a set of tickets (rows of TICKET_TIMELINESS), by name. Every measure
# is additive, so sets can be summed: days of a rollup, the grids of a subtree.
MEASURES: dict[str, str] = {
    "tickets": "count(*)",
    "open": "count(*) FILTER (WHERE status IN ('dispatched', 'acknowledged', 'on_site'))",
    "ack_assessed": "count(*) FILTER (WHERE ack_assessed)",
    "ack_on_time": "count(*) FILTER (WHERE ack_met)",
    "arrive_assessed": "count(*) FILTER (WHERE arrive_assessed)",
    "arrive_on_time": "count(*) FILTER (WHERE arrive_met)",
    "responded": "count(response)",
    "response_s": "COALESCE(sum(extract(epoch FROM response - base)), 0)::float8",
    "arrived": "count(arrived_at)",
    "arrive_s": "COALESCE(sum(extract(epoch FROM arrived_at - base)), 0)::float8",
    "resolved": "count(resolved_at)",
    "resolve_s": "COALESCE(sum(extract(epoch FROM resolved_at - created_at)), 0)::float8",
    "false_alarms": "count(*) FILTER (WHERE outcome = 'false_alarm')",
}
MEASURES_SQL = ", ".join(f"{expr} AS {name}" for name, expr in MEASURES.items())
