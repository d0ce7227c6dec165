"""Firing escalation steps: who is notified, with what text, written to the outbox.

`advance` runs inside the caller's transaction (a new ticket, a ticket action, the escalation
worker): it fires every step that is due, writes one outbox row per recipient with a dedup key
(ticket, assignment, step, recipient) and records the step in the ticket's audit trail, then
stores the next step and its due time on the ticket. The rows are sent after the transaction
commits (alerts.outbox); a step is fired in the same transaction that moves the ticket past it,
so a restart never fires it twice, and the dedup key drops a duplicate row if it ever were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from alerts import rosters, store
from alerts.channels.text import KIND_LABEL, SEVERITY_LABEL
from alerts.escalation import EscalationPolicy, EscalationState, cancel_on, next_step, policy_for
from alerts.outbox import OutboxMessage, insert_notification
from alerts.routing import Responders, Target, route
from whistle.domain import Ticket, TicketStatus
from whistle.timeutil import to_datetime

SYSTEM = "system"


def policy_of(ticket: Ticket) -> EscalationPolicy:
    """The ticket's frozen policy (tickets from before policies were frozen get today's default)."""
    frozen = ticket.policy
    if frozen and frozen.get("steps"):
        return EscalationPolicy.from_json(frozen)
    return policy_for(ticket.kind, ticket.severity)


async def responders_for(conn: store.Conn, ticket: Ticket, now: int) -> Responders:
    chain, candidates = await store.routing_candidates(conn, ticket.grid_id)
    shifts = await rosters.shifts_of(conn, chain[:1])
    contacts = await store.contacts_of(conn, ticket.household_id)
    return route(
        chain,
        candidates,
        shifts,
        now,
        household_id=ticket.household_id,
        contacts=len(contacts),
        assignee=ticket.assignee_id,
    )


def compose(ticket: Ticket, *, place: str, step: int, level: int, target: Target) -> tuple[str, str]:
    """(title, body) of a notification, in Chinese, without personal data."""
    label = KIND_LABEL.get(ticket.kind, ticket.kind.value)
    title = f"{label} {place}".strip()
    number = str(ticket.short_code or ticket.id)
    if ticket.short_code and target is Target.ASSIGNEE:  # only the assignee's reply acknowledges (alerts.replies)
        number += "（短信回复此号即接单）"
    lines = [f"{SEVERITY_LABEL[ticket.severity]}：{label}", f"地点：{place or '-'}", f"工单：{number}"]
    if level > 0:
        lines.append(f"升级第 {level} 级：未在时限内响应")
    if target is Target.CONTACT:
        lines.append("请尽快联系或看望老人，并回复社区。")
    return title, "\n".join(lines)


async def advance(conn: store.Conn, ticket: Ticket, now: int) -> int:
    """Fire the ticket's due escalation steps into the outbox; store the next step. Returns rows queued."""
    tid = ticket.id
    policy = policy_of(ticket)
    base = ticket.escalation_base_at or ticket.created_at or now
    state = EscalationState(ticket.status, base, ticket.escalation_step, await store.has_open_alarms(conn, tid))
    level = ticket.escalation_level
    queued = 0
    responders: Responders | None = None
    place: str | None = None
    while True:
        result = next_step(policy, state, now)
        if result.fire is None or result.index is None:
            break
        step, index = result.fire, result.index
        if responders is None:
            responders = await responders_for(conn, ticket, now)
            place = await store.place_of(conn, ticket.building_id, ticket.household_id)
        people = responders.resolve(step.notify)
        details = await store.recipients(conn, [rid for _, rid in people])
        level = max(level, step.level)
        sent: list[dict[str, str]] = []
        for target, rid in people:
            who = details.get(rid)
            if who is None:
                continue
            title, body = compose(ticket, place=place or "", step=index, level=step.level, target=target)
            row = await insert_notification(
                conn,
                dedup_key=f"{tid}:{ticket.assignment}:{index}:{rid}",
                ticket_id=tid,
                message=OutboxMessage(
                    recipient=who,
                    kind=ticket.kind,
                    severity=ticket.severity,
                    title=title,
                    body=body,
                    target=target.value,
                    level=step.level,
                ),
                priority=ticket.severity.rank,
                cancel_on=cancel_on(step).value,
                step=index,
                now=now,
            )
            if row is not None:
                queued += 1
            sent.append({"target": target.value, "recipient_id": rid})
        await store.add_ticket_event(
            conn,
            tid,
            at=now,
            actor=SYSTEM,
            action="notify" if step.level == 0 else "escalated",
            note=None if sent else "nobody to notify at this step",
            data={"step": index, "level": step.level, "policy": policy.name, "recipients": sent},
        )
        state = replace(state, next_index=result.next_index)
    await store.update_ticket(
        conn,
        tid,
        escalation_step=result.next_index,
        escalation_due_at=to_datetime(result.due_at) if result.due_at is not None else None,
        escalation_level=level,
    )
    return queued


def reached_statuses(status: TicketStatus) -> Sequence[str]:
    """The statuses a ticket in `status` has got past or to (to cancel notifications they make moot)."""
    order = list(TicketStatus)
    return [s.value for s in order[: order.index(status) + 1]]
