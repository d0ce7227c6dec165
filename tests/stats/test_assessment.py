"""The assessment table against the evening's tickets, exact to the second; through the service and over HTTP."""

from __future__ import annotations

import csv
import io

import httpx
import openpyxl

from stats.assessment import Measures, Period, assess_grids, assess_workers
from tests.stats.conftest import NOW, PERIOD, T0, Evening, S
from whistle.timeutil import to_datetime

M01 = Measures(
    tickets=2, open=1, ack_assessed=1, ack_on_time=1, arrive_assessed=1, arrive_on_time=1,
    responded=1, response_s=60.0, arrived=1, arrive_s=600.0, resolved=1, resolve_s=1800.0, false_alarms=0,
)  # fmt: skip
# B late twice (its alarm still open at both deadlines), C missed its ack (open), D has no deadline.
M02 = Measures(
    tickets=3, open=2, ack_assessed=2, ack_on_time=0, arrive_assessed=1, arrive_on_time=0,
    responded=1, response_s=300.0, arrived=1, arrive_s=1000.0, resolved=1, resolve_s=2000.0, false_alarms=1,
)  # fmt: skip


def period() -> Period:
    return Period(to_datetime(T0 - 3600 * S), to_datetime(T0 + 3600 * S))


async def test_grids_are_assessed_against_each_tickets_frozen_policy(evening: Evening) -> None:
    rows = await assess_grids(evening.db, period=period(), now=to_datetime(NOW))
    assert [(r.grid_id, r.level, r.parent_id) for r in rows] == [
        ("RJ-G1", 0, None),
        ("RJ-G1-M01", 1, "RJ-G1"),
        ("RJ-G1-M02", 1, "RJ-G1"),
    ]
    g1, m01, m02 = rows
    assert m01.own == m01.total == M01  # E (cleared by itself before its deadlines) is counted, not assessed
    assert m02.own == m02.total == M02
    assert g1.own == Measures() and g1.total == M01 + M02
    t = g1.total
    assert (t.ack_on_time_share, t.arrive_on_time_share, t.false_alarm_share) == (0.3333, 0.5, 0.5)
    assert (t.mtta_s, t.mtt_arrive_s, t.mttr_s) == (180.0, 800.0, 1900.0)
    assert (m02.total.ack_on_time_share, m02.total.mtta_s) == (0.0, 300.0)


async def test_a_ticket_not_yet_due_is_not_assessed(evening: Evening) -> None:
    # 100 s after C was created its ack is not due yet; B's ack was not due either when it was answered late
    rows = await assess_grids(evening.db, period=period(), now=to_datetime(T0 + 300 * S))
    m02 = {r.grid_id: r for r in rows}["RJ-G1-M02"].own
    assert (m02.ack_assessed, m02.ack_on_time) == (1, 0)  # B only: C's 900 s are not over


async def test_workers_are_assessed_on_the_tickets_assigned_to_them(evening: Evening) -> None:
    rows = await assess_workers(evening.db, period=period(), now=to_datetime(NOW))
    assert [(w.worker_id, w.name, w.role, w.grid_id) for w in rows] == [
        ("W-09", "赵某", "grid_worker", "RJ-G1-M01"),
        ("W-LEAD", "张某", "grid_leader", "RJ-G1"),
    ]
    assert rows[0].measures == M01 and rows[1].measures == M02


async def test_scope_limits_the_table_to_the_callers_grids(evening: Evening) -> None:
    rows = await assess_grids(evening.db, period=period(), now=to_datetime(NOW), grids=["RJ-G1-M02"])
    assert [(r.grid_id, r.level, r.total) for r in rows] == [("RJ-G1-M02", 0, M02)]
    workers = await assess_workers(evening.db, period=period(), now=to_datetime(NOW), grids=["RJ-G1-M01"])
    assert [w.worker_id for w in workers] == ["W-09"]


async def test_the_period_selects_tickets_by_creation(evening: Evening) -> None:
    # from T0+150 s: C, D and E only
    rows = await assess_grids(
        evening.db, period=Period(to_datetime(T0 + 150 * S), to_datetime(NOW)), now=to_datetime(NOW)
    )
    assert {r.grid_id: r.total.tickets for r in rows} == {"RJ-G1": 3, "RJ-G1-M01": 1, "RJ-G1-M02": 2}


async def test_the_tables_over_http(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/stats/grids", params=PERIOD)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["grid_id"] for i in items] == ["RJ-G1", "RJ-G1-M01", "RJ-G1-M02"]
    g1 = items[0]
    assert (g1["tickets"], g1["ack_on_time_share"], g1["arrive_on_time_share"], g1["mtta_s"], g1["mttr_s"]) == (
        5, 0.3333, 0.5, 180.0, 1900.0,
    )  # fmt: skip
    assert g1["own"]["tickets"] == 0 and g1["false_alarm_share"] == 0.5
    workers = (await client.get("/api/v1/stats/workers", params=PERIOD)).json()["items"]
    assert [(w["worker_id"], w["tickets"], w["ack_on_time"]) for w in workers] == [("W-09", 2, 1), ("W-LEAD", 3, 0)]
    # the default period is the current local quarter, which holds the whole evening
    default = (await client.get("/api/v1/stats/grids")).json()
    assert default["since"].startswith("2026-10-01T00:00:00") and default["items"][0]["tickets"] == 5
    bad = await client.get("/api/v1/stats/grids", params={"since": PERIOD["until"], "until": PERIOD["since"]})
    assert bad.status_code == 422


async def test_the_grid_table_exports_to_csv_and_excel(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/stats/grids/export", params={**PERIOD, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert (
        "filename*=UTF-8''%E7%BD%91%E6%A0%BC%E8%80%83%E6%A0%B8-20261118-20261118.csv"
        in r.headers["content-disposition"]
    )
    assert r.content.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0][:8] == ["网格编号", "网格名称", "层级", "工单数", "未结", "应评接单", "按时接单", "按时接单率"]
    assert table[1][:8] == ["RJ-G1", "第一综合网格", "0", "5", "3", "3", "1", "0.3333"]
    assert table[3][0] == "RJ-G1-M02" and table[3][11:14] == ["5.0", "16.7", "33.3"]  # minutes
    assert len(table) == 4

    x = await client.get("/api/v1/stats/grids/export", params=PERIOD)  # xlsx by default
    assert x.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = openpyxl.load_workbook(io.BytesIO(x.content))
    sheet = book["网格考核"]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "网格考核表" and values[1][0] == "统计区间"
    header = next(i for i, row in enumerate(values) if row[0] == "网格编号")
    assert values[header + 1][:8] == ["RJ-G1", "第一综合网格", 0, 5, 3, 3, 1, 0.3333]
    assert sheet.cell(row=header + 2, column=8).number_format == "0.0%"
    assert values[header + 3][11] == 5.0  # M02's MTTA in minutes


async def test_the_worker_table_exports(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/stats/workers/export", params={**PERIOD, "format": "csv"})
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row[:5] for row in table] == [
        ["人员编号", "姓名", "角色", "所属网格", "工单数"],
        ["W-09", "赵某", "网格员", "微网格01", "2"],
        ["W-LEAD", "张某", "网格长", "第一综合网格", "3"],
    ]
    x = await client.get("/api/v1/stats/workers/export", params={**PERIOD, "format": "xlsx"})
    assert openpyxl.load_workbook(io.BytesIO(x.content)).sheetnames == ["人员考核"]
    assert (await client.get("/api/v1/stats/workers/export", params={"format": "pdf"})).status_code == 422


async def test_a_tickets_audit_trail_exports(client: httpx.AsyncClient, evening: Evening) -> None:
    tid = evening.tickets["B"]
    r = await client.get(f"/api/v1/tickets/{tid}/history/export", params={"format": "csv"})
    assert r.status_code == 200
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0] == ["时间", "操作人", "操作", "原状态", "新状态", "备注", "详情"]
    assert [row[2] for row in table[1:]] == ["派单", "通知", "接单", "到场", "办结"]
    assert table[1][0] == "2026-11-18 19:08:20"  # local time of the dispatch (T0 + 100 s)
    assert table[5][3:5] == ["已到场", "已办结"] and '"outcome": "false_alarm"' in table[5][6]
    x = await client.get(f"/api/v1/tickets/{tid}/history/export")
    sheet = openpyxl.load_workbook(io.BytesIO(x.content))["处置记录"]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "工单处置记录"
    assert values[4][:2] == ["地点", "瑞金二路 1 弄 2 号"] and values[2][:2] == ["类型", "火警"]
    header = next(i for i, row in enumerate(values) if row[0] == "时间")
    assert values[header + 3][2] == "接单" and values[header + 3][0].isoformat() == "2026-11-18T19:13:20"
    missing = await client.get("/api/v1/tickets/00000000-0000-4000-8000-000000000000/history/export")
    assert missing.status_code == 404
