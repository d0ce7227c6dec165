"""Tables as files for the quarterly review: CSV (UTF-8 with a byte-order mark, so Excel reads the Chinese)
and Excel .xlsx (XlsxWriter), from one description of the columns.

Shares are fractions (0.875) written as percentages in Excel and as numbers in CSV; durations are
seconds turned into minutes; times are local (Asia/Shanghai) wall times.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import xlsxwriter

from alerts.channels.text import KIND_LABEL, SEVERITY_LABEL
from alerts.queries import TicketView
from stats.assessment import GridAssessment, Measures, WorkerAssessment
from whistle.privacy import mask_json, mask_phones_in
from whistle.timeutil import CHINA_TZ, to_datetime


class Format(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"

    @property
    def media_type(self) -> str:
        if self is Format.CSV:
            return "text/csv; charset=utf-8"
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class Cell(StrEnum):
    """How a column's values are written."""

    TEXT = "text"
    INT = "int"
    SHARE = "share"  # a fraction, shown as a percentage
    MINUTES = "minutes"  # seconds, shown as minutes
    TIME = "time"  # an aware datetime, shown as local time


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    cell: Cell = Cell.TEXT
    width: float = 12.0


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table; `meta` lines (label, value) head the sheet in Excel (CSV keeps only the table)."""

    title: str
    sheet: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]
    meta: Sequence[tuple[str, str]] = field(default_factory=tuple)


def _local(value: datetime) -> datetime:
    return value.astimezone(CHINA_TZ)


def _csv_value(value: Any, cell: Cell) -> Any:
    if value is None:
        return ""
    if cell is Cell.MINUTES:
        return f"{value / 60:.1f}"
    if cell is Cell.SHARE:
        return f"{value:.4f}"
    if cell is Cell.TIME:
        return _local(value).strftime("%Y-%m-%d %H:%M:%S")
    return value


def to_csv(table: Table) -> bytes:
    """RFC 4180 CSV (CRLF line ends) in UTF-8 with a byte-order mark; an empty cell for a missing value."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([c.header for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_value(v, c.cell) for v, c in zip(row, table.columns, strict=True)])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(table: Table) -> bytes:
    """One sheet: the title, the meta lines, then the table with a header row, filters and frozen panes."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "remove_timezone": True})
    sheet = book.add_worksheet(table.sheet[:31])
    title = book.add_format({"bold": True, "font_size": 14})
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True, "valign": "top"})
    formats = {
        Cell.TEXT: book.add_format({}),
        Cell.INT: book.add_format({"num_format": "0"}),
        Cell.SHARE: book.add_format({"num_format": "0.0%"}),
        Cell.MINUTES: book.add_format({"num_format": "0.0"}),
        Cell.TIME: book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
    }
    sheet.write_string(0, 0, table.title, title)
    r = 1
    for label, value in table.meta:
        sheet.write_string(r, 0, label)
        sheet.write_string(r, 1, value)
        r += 1
    r += 1
    header_row = r
    for c, col in enumerate(table.columns):
        sheet.write_string(r, c, col.header, head)
        sheet.set_column(c, c, col.width)
    for row in table.rows:
        r += 1
        for c, (value, col) in enumerate(zip(row, table.columns, strict=True)):
            if value is None:
                sheet.write_blank(r, c, None)
            elif col.cell is Cell.MINUTES:
                sheet.write_number(r, c, round(value / 60, 1), formats[col.cell])
            elif col.cell is Cell.TIME:
                sheet.write_datetime(r, c, _local(value).replace(tzinfo=None), formats[col.cell])
            elif col.cell in (Cell.INT, Cell.SHARE):
                sheet.write_number(r, c, value, formats[col.cell])
            else:
                sheet.write_string(r, c, str(value), formats[col.cell])
    sheet.freeze_panes(header_row + 1, 0)
    sheet.autofilter(header_row, 0, max(r, header_row), len(table.columns) - 1)
    book.close()
    return buf.getvalue()


def render(table: Table, fmt: Format) -> bytes:
    return to_csv(table) if fmt is Format.CSV else to_xlsx(table)


def disposition(filename: str) -> str:
    """A Content-Disposition for a download whose name may be Chinese (RFC 6266 / RFC 5987)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


# The tables ------------------------------------------------------------------------------------

_MEASURE_COLUMNS = (
    Column("工单数", Cell.INT, 8),
    Column("未结", Cell.INT, 6),
    Column("应评接单", Cell.INT, 9),
    Column("按时接单", Cell.INT, 9),
    Column("按时接单率", Cell.SHARE, 10),
    Column("应评到场", Cell.INT, 9),
    Column("按时到场", Cell.INT, 9),
    Column("按时到场率", Cell.SHARE, 10),
    Column("平均接单(分钟)", Cell.MINUTES, 10),
    Column("平均到场(分钟)", Cell.MINUTES, 10),
    Column("平均办结(分钟)", Cell.MINUTES, 10),
    Column("已办结", Cell.INT, 8),
    Column("误报", Cell.INT, 6),
    Column("误报率", Cell.SHARE, 8),
)


def _measures(m: Measures) -> list[Any]:
    return [
        m.tickets,
        m.open,
        m.ack_assessed,
        m.ack_on_time,
        m.ack_on_time_share,
        m.arrive_assessed,
        m.arrive_on_time,
        m.arrive_on_time_share,
        m.mtta_s,
        m.mtt_arrive_s,
        m.mttr_s,
        m.resolved,
        m.false_alarms,
        m.false_alarm_share,
    ]


def _period(since: datetime, until: datetime) -> list[tuple[str, str]]:
    fmt = "%Y-%m-%d %H:%M"
    return [
        ("统计区间", f"{_local(since).strftime(fmt)} 至 {_local(until).strftime(fmt)}（北京时间，按派单时间）"),
        ("口径", "按时：在工单冻结的升级策略越过处置人之前接单/到场；接单以接单、到场、办结中最早者计"),
    ]


def grid_table(rows: Sequence[GridAssessment], *, since: datetime, until: datetime) -> Table:
    """The grid assessment table: a row per grid, its subtree's tickets."""
    columns = (
        Column("网格编号", width=16),
        Column("网格名称", width=16),
        Column("层级", Cell.INT, 6),
        *_MEASURE_COLUMNS,
    )
    body = [[g.grid_id, "  " * g.level + g.name, g.level, *_measures(g.total)] for g in rows]
    return Table("网格考核表", "网格考核", columns, body, _period(since, until))


def worker_table(rows: Sequence[WorkerAssessment], *, since: datetime, until: datetime) -> Table:
    """The worker assessment table: a row per assignee."""
    columns = (
        Column("人员编号", width=16),
        Column("姓名", width=10),
        Column("角色", width=12),
        Column("所属网格", width=16),
        *_MEASURE_COLUMNS,
    )
    body = [
        [
            w.worker_id,
            w.name,
            ROLE_LABEL.get(w.role or "", w.role or ""),
            w.grid_name or w.grid_id or "",
            *_measures(w.measures),
        ]
        for w in rows
    ]
    return Table("网格员考核表", "人员考核", columns, body, _period(since, until))


ROLE_LABEL = {
    "grid_worker": "网格员",
    "grid_leader": "网格长",
    "street_center": "城运中心",
    "property": "物业",
    "elevator_maintainer": "电梯维保",
}

ACTION_LABEL = {
    "dispatched": "派单",
    "notify": "通知",
    "escalated": "升级",
    "ack": "接单",
    "arrive": "到场",
    "resolve": "办结",
    "close": "关闭",
    "reassign": "改派",
    "transfer": "转派",
    "comment": "备注",
    "alarm_grouped": "告警合并",
    "alarm_cleared": "告警解除",
    "severity_raised": "级别提升",
    "seen": "已查看通知",
    "unseen": "通知未查看，改用下一渠道",
}

STATUS_LABEL = {
    "dispatched": "已派单",
    "acknowledged": "已接单",
    "on_site": "已到场",
    "resolved": "已办结",
    "closed": "已关闭",
}


def audit_table(view: TicketView, *, place: str, masked: bool = False) -> Table:
    """A ticket's audit trail, oldest first, headed by what the ticket is; `masked` (a screen) masks phone numbers
    in notes and event data."""
    t = view.ticket
    columns = (
        Column("时间", Cell.TIME, 20),
        Column("操作人", width=14),
        Column("操作", width=10),
        Column("原状态", width=10),
        Column("新状态", width=10),
        Column("备注", width=30),
        Column("详情", width=50),
    )
    body = [
        [
            to_datetime(e.at),
            e.actor,
            ACTION_LABEL.get(e.action, e.action),
            STATUS_LABEL.get(e.from_status or "", e.from_status or ""),
            STATUS_LABEL.get(e.to_status or "", e.to_status or ""),
            (mask_phones_in(e.note) if masked and e.note else e.note) or "",
            json.dumps(mask_json(dict(e.data)) if masked else dict(e.data), ensure_ascii=False, sort_keys=True)
            if e.data
            else "",
        ]
        for e in view.history
    ]
    meta = [
        ("工单", t.id),
        ("类型", KIND_LABEL.get(t.kind, t.kind.value)),
        ("级别", SEVERITY_LABEL[t.severity]),
        ("地点", place or "-"),
        ("处置人", t.assignee_id or "-"),
        ("状态", STATUS_LABEL.get(t.status.value, t.status.value)),
        ("派单时间", _local(to_datetime(t.created_at)).strftime("%Y-%m-%d %H:%M:%S")),
    ]
    return Table("工单处置记录", "处置记录", columns, body, meta)
