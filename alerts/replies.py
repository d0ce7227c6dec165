"""SMS replies: a worker answers the alarm's SMS with the ticket's short code, and the ticket is acknowledged.

The providers call back with what their users replied (both documented as JSON over HTTP POST):

- **Tencent Cloud** (短信回复回调, cloud.tencent.com/document/api/382/5809): one object
  `{"extend", "mobile", "nationcode", "sign", "text", "time"}` — `mobile` without the country code, which is
  `nationcode`, `time` in Unix seconds; the answer `{"result": 0, "errmsg": "OK"}`.
- **Alibaba Cloud** (SmsUp, HTTP 批量推送模式, help.aliyun.com/zh/sms/developer-reference/smsup-http): an
  array of `{"phone_number", "content", "send_time", "dest_code", "sequence_id", "sign_name"}` —
  `phone_number` a mainland number without +86, `send_time` "YYYY-MM-DD HH:MM:SS" in Beijing time; the
  answer `{"code": 0, "msg": "接收成功"}` with HTTP 200 (anything else is pushed again after 1, 5 and 10 min).

Neither signs its callbacks: the callback URL carries a key (WHISTLE_SMS_REPLY_KEY) that the route
checks, and a reply counts only if it comes **from the phone number of the worker the ticket is
assigned to** and names that ticket's code (the message tells them which: "回复 1042 接单"). Every
reply is recorded (`sms_replies`, the phone masked) with what it did; one that matches nothing changes
nothing. Replying again is harmless: an acknowledged ticket stays acknowledged.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from alerts.service import AlertService, TicketError
from whistle.privacy import mask_phone, redact
from whistle.store.db import Database
from whistle.timeutil import CHINA_TZ

_CODE = re.compile(r"(?<!\d)(\d{4,12})(?!\d)")
MAX_TEXT = 500


class Provider(StrEnum):
    TENCENT = "tencent"
    ALIYUN = "aliyun"


@dataclass(frozen=True, slots=True)
class SmsReply:
    """One reply as the provider reported it: from which number (E.164), what it said, when."""

    provider: Provider
    phone: str | None  # E.164, None if the number could not be read
    text: str
    sent_at: int | None  # ms, the provider's time of the reply


class Outcome(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    ALREADY = "already_acknowledged"  # acknowledged or on site before: nothing to do
    CLOSED = "closed"  # resolved or closed: nothing to do
    NO_CODE = "no_code"
    UNKNOWN_SENDER = "unknown_sender"  # no active worker has this number
    UNKNOWN_CODE = "unknown_code"  # no ticket with this code is assigned to the sender


@dataclass(frozen=True, slots=True)
class ReplyResult:
    outcome: Outcome
    worker_id: str | None = None
    ticket_id: str | None = None


def e164(number: object, country: object = "86") -> str | None:
    """A provider's number as E.164 (+8613900000000), or None: digits only, the country code added when absent."""
    digits = re.sub(r"\D", "", str(number or ""))
    cc = re.sub(r"\D", "", str(country or "86")) or "86"
    if not digits:
        return None
    if digits.startswith("00"):
        digits = digits[2:]
    elif cc == "86" and len(digits) == 11 and digits.startswith("1"):
        digits = "86" + digits
    elif not digits.startswith(cc):
        digits = cc + digits
    return "+" + digits if 8 <= len(digits) <= 15 else None


def code_of(text: str) -> str | None:
    """The first run of 4 to 12 digits in a reply (full-width digits too: "１０４２ 收到")."""
    m = _CODE.search(unicodedata.normalize("NFKC", text))
    return m.group(1) if m else None


def _items(doc: Any) -> Sequence[Mapping[str, Any]]:
    if isinstance(doc, Mapping):
        return [doc]
    if isinstance(doc, list):
        return [d for d in doc if isinstance(d, Mapping)]
    raise ValueError("a reply callback is a JSON object or an array of them")


def tencent_replies(doc: Any) -> list[SmsReply]:
    """Tencent Cloud's reply callback (one object; an array is read too)."""
    out = []
    for d in _items(doc):
        at = d.get("time")
        sent = int(at) * 1000 if isinstance(at, int | float) and not isinstance(at, bool) else None
        out.append(SmsReply(Provider.TENCENT, e164(d.get("mobile"), d.get("nationcode")), str(d.get("text", "")), sent))
    return out


def aliyun_replies(doc: Any) -> list[SmsReply]:
    """Alibaba Cloud's SmsUp push (an array; one object is read too)."""
    out = []
    for d in _items(doc):
        sent = None
        raw = str(d.get("send_time", ""))
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S"):
            try:
                sent = int(datetime.strptime(raw, fmt).replace(tzinfo=CHINA_TZ).timestamp() * 1000)
                break
            except ValueError:
                continue
        out.append(SmsReply(Provider.ALIYUN, e164(d.get("phone_number")), str(d.get("content", "")), sent))
    return out


async def apply_reply(db: Database, service: AlertService, reply: SmsReply) -> ReplyResult:
    """Acknowledge the ticket a reply names, if it comes from its assignee's phone; record the reply either way."""
    result = await _match(db, service, reply)
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO sms_replies (provider, phone, text, worker_id, ticket_id, outcome) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                reply.provider.value,
                mask_phone(reply.phone) if reply.phone else "",
                redact(reply.text[:MAX_TEXT]) or "",
                result.worker_id,
                result.ticket_id,
                result.outcome.value,
            ),
        )
    return result


async def _match(db: Database, service: AlertService, reply: SmsReply) -> ReplyResult:
    if reply.phone is None:
        return ReplyResult(Outcome.UNKNOWN_SENDER)
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM workers WHERE phone = %s AND retired_at IS NULL ORDER BY id", (reply.phone,)
        )
        workers = [r[0] for r in await cur.fetchall()]
        if not workers:
            return ReplyResult(Outcome.UNKNOWN_SENDER)
        code = code_of(reply.text)
        if code is None:
            return ReplyResult(Outcome.NO_CODE, workers[0])
        cur = await conn.execute(
            "SELECT id::text, assignee_id, status FROM tickets WHERE short_code = %s AND assignee_id = ANY(%s)",
            (int(code), workers),
        )
        row = await cur.fetchone()
    if row is None:
        return ReplyResult(Outcome.UNKNOWN_CODE, workers[0])
    ticket_id, worker, status = row
    if status in ("acknowledged", "on_site"):
        return ReplyResult(Outcome.ALREADY, worker, ticket_id)
    if status in ("resolved", "closed"):
        return ReplyResult(Outcome.CLOSED, worker, ticket_id)
    try:
        await service.transition(
            ticket_id,
            "ack",
            actor=worker,
            note=f"短信回复「{redact(reply.text[:100])}」",
            extra={"via": "sms_reply", "provider": reply.provider.value},
            assignee=worker,
        )
    except TicketError:  # acknowledged, resolved or reassigned in the meantime
        return ReplyResult(Outcome.ALREADY, worker, ticket_id)
    return ReplyResult(Outcome.ACKNOWLEDGED, worker, ticket_id)
