"""How a notification reads in Chinese: labels for kinds and severities, local time, and length limits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from alerts.channels.base import Notification
from whistle.domain import AlarmKind, Severity
from whistle.timeutil import CHINA_TZ

SEVERITY_LABEL: Mapping[Severity, str] = {
    Severity.CRITICAL: "紧急",
    Severity.MAJOR: "重要",
    Severity.MINOR: "一般",
    Severity.WARNING: "提示",
}

KIND_LABEL: Mapping[AlarmKind, str] = {
    AlarmKind.SMOKE_FIRE: "火警",
    AlarmKind.SMOKE_FAULT: "烟感故障",
    AlarmKind.SMOKE_TAMPER: "烟感被拆",
    AlarmKind.SMOKE_LOW_BATTERY: "烟感低电量",
    AlarmKind.ELEVATOR_TRAPPED: "电梯困人",
    AlarmKind.ELEVATOR_FAULT: "电梯故障",
    AlarmKind.ELEVATOR_EBIKE: "电动车进电梯",
    AlarmKind.EBIKE_INDOOR_CHARGING: "电动车入户充电",
    AlarmKind.GROUP_RENTAL_SUSPECTED: "疑似群租",
    AlarmKind.LONE_ELDER_INACTIVE: "独居老人异常",
    AlarmKind.WATER_CONTINUOUS_FLOW: "长流水",
    AlarmKind.DEVICE_OFFLINE: "设备离线",
    AlarmKind.DEVICE_MASS_OFFLINE: "设备批量离线",
    AlarmKind.SYSTEM_NOTIFICATION_CAP: "通知达到上限",
    AlarmKind.SYSTEM_ROLE_DOWN: "系统服务中断",
    AlarmKind.SYSTEM_LAG: "系统处理积压",
    AlarmKind.SYSTEM_INGEST_BACKLOG: "设备数据接入积压",
    AlarmKind.SYSTEM_DEAD_LETTERS: "异常数据激增",
    AlarmKind.SYSTEM_DATABASE: "数据库连接中断",
    AlarmKind.SYSTEM_BROKER: "消息服务器连接中断",
}


def local_time(ms: int) -> str:
    """Wall time in China, e.g. "11-24 08:15"."""
    return datetime.fromtimestamp(ms / 1000, tz=CHINA_TZ).strftime("%m-%d %H:%M")


def clip(text: str, max_chars: int) -> str:
    """At most `max_chars` characters, with an ellipsis when cut."""
    if max_chars <= 0:
        return ""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def clip_utf8(text: str, max_bytes: int) -> str:
    """At most `max_bytes` UTF-8 bytes, cut on a character boundary, with an ellipsis when cut."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    budget = max(0, max_bytes - len("…".encode()))
    return raw[:budget].decode("utf-8", errors="ignore") + "…"


# Fields an SMS template may take, by the name used in WHISTLE_SMS_*_TEMPLATE_PARAMS: `code` is the ticket's
# short code to reply with, `link` the assignee's one-tap link (else the ticket's page), `token` the one-tap
# link's last part alone (for a template that holds the fixed https://…/m/a/ itself).
TEMPLATE_FIELDS = ("title", "body", "kind", "severity", "ticket", "time", "name", "code", "link", "token")
# Fields never cut to the provider's length limit: a cut link is a broken link (configure the template for it).
UNCLIPPED_FIELDS = frozenset({"link", "token"})


def template_values(message: Notification) -> dict[str, str]:
    """Every field an SMS template may use, as text."""
    link = message.ack_url or message.url
    return {
        "title": message.title,
        "body": message.body,
        "kind": KIND_LABEL.get(message.kind, message.kind.value),
        "severity": SEVERITY_LABEL[message.severity],
        "ticket": message.ticket_id or "-",
        "time": local_time(message.created_at),
        "name": message.recipient.name,
        "code": message.reply_code or "-",
        "link": link or "-",
        "token": message.ack_url.rsplit("/", 1)[-1] if message.ack_url else "-",
    }


def markdown(message: Notification, *, mention: str | None = None, max_bytes: int = 4096) -> tuple[str, str]:
    """(title, text) of a group-robot markdown message; the body is cut so the text fits
    `max_bytes` and the mention at its end survives."""
    label = SEVERITY_LABEL[message.severity]
    kind = KIND_LABEL.get(message.kind, message.kind.value)
    title = f"【{label}】{kind}：{message.title}"
    head = [f"### {title}", ""]
    tail = [
        "",
        f"- 级别：{label}",
        f"- 类型：{kind}",
        f"- 工单：{message.ticket_id or '-'}",
        f"- 时间：{local_time(message.created_at)}",
    ]
    if message.ack_url:
        tail.append(f"- [一键接单]({message.ack_url})")
    if message.url:
        tail.append(f"- [查看工单]({message.url})")
    if mention:
        tail += ["", mention]
    frame = "\n".join([*head, "", *tail])
    body = clip_utf8(message.body, max(0, max_bytes - len(frame.encode("utf-8"))))
    return title, "\n".join([*head, body, *tail])
