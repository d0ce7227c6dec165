"""Firing escalation steps: who is notified, with what text, written to the outbox.

`advance` runs inside the caller's transaction (a new ticket, a ticket action, the escalation
worker): it fires every step that is due, writes one outbox row per recipient with a dedup key
(ticket, assignment, step, recipient) and records the step in the ticket's audit trail, then
stores the next step and its due time on the ticket. The rows are sent after the transaction
commits (alerts.outbox); a step is fired in the same transaction that moves the ticket past it,
so a restart never fires it twice, and the dedup key drops a duplicate row if it ever were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from alerts import repository as repo
from alerts.channels.text import KIND_LABEL, SEVERITY_LABEL
from alerts.escalation import EscalationPolicy, EscalationState, cancel_on, next_step, policy_for
from alerts.routing import Responders, Target, route
from whistle.domain import AlarmKind, Severity, TicketStatus
from whistle.timeutil import from_datetime, to_datetime

SYSTEM = "system"

# The channels tried for each kind of recipient, in order (docs/NOTIFICATIONS.md). Channels that
# are not configured in a process are skipped. Workers: the app if open, push, SMS through either
# vendor, then the grid's group robots and the webhook. Emergency contacts have only a phone.
ROUTES: Mapping[str, tuple[str, ...]] = {
    "worker": ("live", "webpush", "sms.aliyun", "sms.tencent", "dingtalk", "wecom", "webhook"),
    "contact": ("sms.aliyun", "sms.tencent", "webhook"),
}


def _ms(value: datetime | None) -> int | None:
    return from_datetime(value) if value is not None else None


def policy_of(ticket: Mapping[str, Any]) -> EscalationPolicy:
    """The ticket's frozen policy (tickets from before policies were frozen get today's default)."""
    frozen = ticket.get("policy")
    if frozen and frozen.get("steps"):
        return EscalationPolicy.from_json(frozen)
    return policy_for(AlarmKind(ticket["kind"]), Severity(ticket["severity"]))


async def responders_for(conn: repo.Conn, ticket: Mapping[str, Any], now: int) -> Responders:
    chain, candidates = await repo.routing_candidates(conn, ticket["grid_id"])
    shifts = await repo.shifts_of(conn, chain[:1])
    contacts = await repo.contacts_of(conn, ticket.get("household_id"))
    return route(
        chain,
        candidates,
        shifts,
        now,
        household_id=ticket.get("household_id"),
        contacts=len(contacts),
        assignee=ticket["assignee_id"],
    )


def compose(ticket: Mapping[str, Any], *, place: str, step: int, level: int, target: Target) -> tuple[str, str]:
    """(title, body) of a notification, in Chinese, without personal data."""
    kind = AlarmKind(ticket["kind"])
    severity = Severity(ticket["severity"])
    label = KIND_LABEL.get(kind, kind.value)
    title = f"{label} {place}".strip()
    lines = [f"{SEVERITY_LABEL[severity]}：{label}", f"地点：{place or '-'}", f"工单：{ticket['id']}"]
    if level > 0:
        lines.append(f"升级第 {level} 级：未在时限内响应")
    if target is Target.CONTACT:
        lines.append("请尽快联系或看望老人，并回复社区。")
    return title, "\n".join(lines)


async def advance(conn: repo.Conn, ticket: Mapping[str, Any], now: int) -> int:
    """Fire the ticket's due escalation steps into the outbox; store the next step. Returns rows queued."""
    tid = str(ticket["id"])
    policy = policy_of(ticket)
    base = _ms(ticket.get("escalation_base_at")) or _ms(ticket["created_at"]) or now
    state = EscalationState(
        TicketStatus(ticket["status"]),
        base,
        int(ticket.get("escalation_step") or 0),
        await repo.has_open_alarms(conn, tid),
    )
    level = int(ticket.get("escalation_level") or 0)
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
            place = await repo.place_of(conn, ticket.get("building_id"), ticket.get("household_id"))
        people = responders.resolve(step.notify)
        details = await repo.recipients(conn, [rid for _, rid in people])
        level = max(level, step.level)
        sent: list[dict[str, Any]] = []
        for target, rid in people:
            who = details.get(rid)
            if who is None:
                continue
            title, body = compose(ticket, place=place or "", step=index, level=step.level, target=target)
            row = await repo.insert_notification(
                conn,
                dedup_key=f"{tid}:{ticket.get('assignment') or 0}:{index}:{rid}",
                ticket_id=tid,
                recipient_id=rid,
                profile=who["type"],
                body={
                    "recipient": who,
                    "kind": ticket["kind"],
                    "severity": ticket["severity"],
                    "title": title,
                    "body": body,
                    "target": target.value,
                    "level": step.level,
                },
                priority=Severity(ticket["severity"]).rank,
                cancel_on=cancel_on(step).value,
                step=index,
                now=now,
            )
            if row is not None:
                queued += 1
            sent.append({"target": target.value, "recipient_id": rid})
        await repo.add_ticket_event(
            conn,
            tid,
            at=now,
            actor=SYSTEM,
            action="notify" if step.level == 0 else "escalated",
            note=None if sent else "nobody to notify at this step",
            data={"step": index, "level": step.level, "policy": policy.name, "recipients": sent},
        )
        state = replace(state, next_index=result.next_index)
    await repo.update_ticket(
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
