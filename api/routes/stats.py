"""Statistics for the screens and the quarterly review: counters, trends, the ticker, the assessment tables
(JSON, CSV and Excel). Every figure is computed in stats/; these routes parse, authorise and call it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Allow, Services
from api.exports import Format, disposition, grid_table, render, worker_table
from api.responses import json_of
from api.schemas import (
    AlarmPlaceRead,
    AssessmentRead,
    GridAssessmentRead,
    SummaryRead,
    TickerRead,
    TrendPointRead,
    TrendsRead,
    WorkerAssessmentRead,
)
from stats import assessment, places, summary, trends
from stats.assessment import Period
from stats.trends import Bucket
from whistle.access import Permission, Principal
from whistle.domain import AlarmKind
from whistle.timeutil import CHINA_TZ, to_datetime

router = APIRouter(prefix="/stats")
Screen = Annotated[Principal, Allow(Permission.SCREEN_READ)]
Assessor = Annotated[Principal, Allow(Permission.ASSESSMENT_READ)]

Since = Annotated[datetime | None, Query(description="RFC 3339; default: the start of the current local quarter")]
Until = Annotated[datetime | None, Query(description="RFC 3339; default: now")]
ExportFormat = Annotated[Format, Query(alias="format", description="csv or xlsx")]


def quarter_start(now: datetime) -> datetime:
    """The local (Asia/Shanghai) start of `now`'s calendar quarter."""
    local = now.astimezone(CHINA_TZ)
    return local.replace(month=(local.month - 1) // 3 * 3 + 1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _period(now: datetime, since: datetime | None, until: datetime | None) -> Period:
    return Period(since or quarter_start(now), until or now)


@router.get("/summary", response_model=SummaryRead)
async def get_summary(ctx: Services, user: Screen) -> SummaryRead:
    """Today's alarms by kind and severity, open alarms, open and overdue tickets, today's MTTA, time to arrive and
    MTTR, devices online by type, low batteries, silences in force."""
    now = to_datetime(ctx.alerts.clock())
    found = await summary.summary(ctx.db, now=now, low_battery_pct=ctx.screen.low_battery_pct, grids=user.grids)
    return SummaryRead.of(found)


@router.get("/trends", response_model=TrendsRead)
async def get_trends(
    ctx: Services,
    user: Screen,
    bucket: Bucket = Bucket.HOUR,
    kind: AlarmKind | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> TrendsRead:
    """Alarms detected per local hour or day, by severity (default window: the last 24 hours, or 7 days)."""
    now = to_datetime(ctx.alerts.clock())
    points = await trends.trends(ctx.db, bucket=bucket, now=now, since=since, until=until, kind=kind, grids=user.grids)
    return TrendsRead(
        bucket=bucket.value, kind=kind.value if kind else None, items=[TrendPointRead.model_validate(p) for p in points]
    )


@router.get("/ticker", response_model=TickerRead)
async def get_ticker(
    ctx: Services,
    user: Screen,
    limit: Annotated[int, Query(ge=1, le=200)] = 30,
    open_only: Annotated[bool, Query(alias="open")] = False,
) -> Response:
    """The latest alarms by detection (wall) time with their place (grid name, address, unit) and ticket, and
    the server's clock to age them by."""
    now = to_datetime(ctx.alerts.clock())
    items = await places.recent_alarms(ctx.db, limit=limit, open_only=open_only, grids=user.grids)
    return json_of(TickerRead(now=now, items=[AlarmPlaceRead.of(a) for a in items]))


@router.get("/grids", response_model=AssessmentRead[GridAssessmentRead])
async def get_grid_assessment(ctx: Services, user: Assessor, since: Since = None, until: Until = None) -> Response:
    """Per grid (its whole subtree), over the tickets created in the period: counts, acknowledged and on site on
    time against each ticket's frozen escalation policy, MTTA, time to arrive, MTTR, false-alarm share."""
    now = to_datetime(ctx.alerts.clock())
    period = _period(now, since, until)
    rows = await assessment.assess_grids(ctx.db, period=period, now=now, grids=user.grids)
    items = [GridAssessmentRead.of_grid(g) for g in rows]
    return json_of(AssessmentRead[GridAssessmentRead](since=period.since, until=period.until, items=items))


@router.get("/workers", response_model=AssessmentRead[WorkerAssessmentRead])
async def get_worker_assessment(ctx: Services, user: Assessor, since: Since = None, until: Until = None) -> Response:
    """Per assignee, the same measures as the grid table."""
    now = to_datetime(ctx.alerts.clock())
    period = _period(now, since, until)
    rows = await assessment.assess_workers(ctx.db, period=period, now=now, grids=user.grids)
    items = [WorkerAssessmentRead.of_worker(w) for w in rows]
    return json_of(AssessmentRead[WorkerAssessmentRead](since=period.since, until=period.until, items=items))


def _file(body: bytes, fmt: Format, name: str) -> Response:
    return Response(body, media_type=fmt.media_type, headers={"Content-Disposition": disposition(name)})


def _stamp(period: Period) -> str:
    return f"{period.since.astimezone(CHINA_TZ):%Y%m%d}-{period.until.astimezone(CHINA_TZ):%Y%m%d}"


@router.get("/grids/export", response_class=Response)
async def export_grid_assessment(
    ctx: Services, user: Assessor, fmt: ExportFormat = Format.XLSX, since: Since = None, until: Until = None
) -> Response:
    """The grid assessment table as CSV or Excel (.xlsx) for the quarterly review."""
    now = to_datetime(ctx.alerts.clock())
    period = _period(now, since, until)
    rows = await assessment.assess_grids(ctx.db, period=period, now=now, grids=user.grids)
    body = render(grid_table(rows, since=period.since, until=period.until), fmt)
    return _file(body, fmt, f"网格考核-{_stamp(period)}.{fmt.value}")


@router.get("/workers/export", response_class=Response)
async def export_worker_assessment(
    ctx: Services, user: Assessor, fmt: ExportFormat = Format.XLSX, since: Since = None, until: Until = None
) -> Response:
    """The worker assessment table as CSV or Excel (.xlsx)."""
    now = to_datetime(ctx.alerts.clock())
    period = _period(now, since, until)
    rows = await assessment.assess_workers(ctx.db, period=period, now=now, grids=user.grids)
    body = render(worker_table(rows, since=period.since, until=period.until), fmt)
    return _file(body, fmt, f"人员考核-{_stamp(period)}.{fmt.value}")
