"""The assessment table (扶余's quarterly review by count and timeliness): per grid and per worker over a period.

For the tickets created in the period: how many, how many acknowledged and on site on time (the
share of those assessed, against each ticket's frozen policy: stats/timeliness.py), mean time to
acknowledge (MTTA, from the escalation base to the first response), to arrive, and to resolve
(MTTR, from creation), and the share of resolved tickets that were false alarms.

The SQL returns additive measures per micro-grid (or per assignee); means and shares are computed
here, and a parent grid's row is the sum of its subtree, so a comprehensive grid's leader sees
their residential areas and micro-grids with the same figures added up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from psycopg.rows import dict_row

from whistle.errors import Invalid
from whistle.store.db import Database

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

_MEASURES = """
    count(*) AS tickets,
    count(*) FILTER (WHERE status IN ('dispatched', 'acknowledged', 'on_site')) AS open,
    count(*) FILTER (WHERE ack_assessed) AS ack_assessed,
    count(*) FILTER (WHERE ack_met) AS ack_on_time,
    count(*) FILTER (WHERE arrive_assessed) AS arrive_assessed,
    count(*) FILTER (WHERE arrive_met) AS arrive_on_time,
    count(response) AS responded,
    COALESCE(sum(extract(epoch FROM response - base)), 0)::float8 AS response_s,
    count(arrived_at) AS arrived,
    COALESCE(sum(extract(epoch FROM arrived_at - base)), 0)::float8 AS arrive_s,
    count(resolved_at) AS resolved,
    COALESCE(sum(extract(epoch FROM resolved_at - created_at)), 0)::float8 AS resolve_s,
    count(*) FILTER (WHERE outcome = 'false_alarm') AS false_alarms
"""

_ADDITIVE = (
    "tickets",
    "open",
    "ack_assessed",
    "ack_on_time",
    "arrive_assessed",
    "arrive_on_time",
    "responded",
    "response_s",
    "arrived",
    "arrive_s",
    "resolved",
    "resolve_s",
    "false_alarms",
)


@dataclass(frozen=True, slots=True)
class Measures:
    """What the SQL adds up for a set of tickets; the means and shares are derived."""

    tickets: int = 0
    open: int = 0
    ack_assessed: int = 0
    ack_on_time: int = 0
    arrive_assessed: int = 0
    arrive_on_time: int = 0
    responded: int = 0
    response_s: float = 0.0
    arrived: int = 0
    arrive_s: float = 0.0
    resolved: int = 0
    resolve_s: float = 0.0
    false_alarms: int = 0

    def __add__(self, other: Measures) -> Measures:
        return Measures(*(getattr(self, f) + getattr(other, f) for f in _ADDITIVE))

    @property
    def ack_on_time_share(self) -> float | None:
        return _share(self.ack_on_time, self.ack_assessed)

    @property
    def arrive_on_time_share(self) -> float | None:
        return _share(self.arrive_on_time, self.arrive_assessed)

    @property
    def mtta_s(self) -> float | None:
        return _mean(self.response_s, self.responded)

    @property
    def mtt_arrive_s(self) -> float | None:
        return _mean(self.arrive_s, self.arrived)

    @property
    def mttr_s(self) -> float | None:
        return _mean(self.resolve_s, self.resolved)

    @property
    def false_alarm_share(self) -> float | None:
        return _share(self.false_alarms, self.resolved)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 1) if n else None


def _measures(row: dict[str, object]) -> Measures:
    return Measures(**{f: row[f] for f in _ADDITIVE})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class GridAssessment:
    """One grid's row: its own tickets and (`total`) those of its whole subtree."""

    grid_id: str
    name: str
    parent_id: str | None
    level: int  # 0: a top-level (comprehensive) grid
    own: Measures
    total: Measures


@dataclass(frozen=True, slots=True)
class WorkerAssessment:
    worker_id: str
    name: str
    role: str | None
    grid_id: str | None
    grid_name: str | None
    measures: Measures


@dataclass(frozen=True, slots=True)
class Period:
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise Invalid("since and until need a UTC offset")
        if self.until <= self.since:
            raise Invalid("until must be after since")


def _scope_clause(grids: Sequence[str] | None, column: str = "grid_id") -> str:
    return "" if grids is None else f" AND {column} = ANY(%(grids)s)"


async def assess_grids(
    db: Database, *, period: Period, now: datetime, grids: Sequence[str] | None = None
) -> list[GridAssessment]:
    """Every grid in scope with its tickets created in the period, parents before their children."""
    sql = (
        f"WITH per AS ({TICKET_TIMELINESS} WHERE t.created_at >= %(since)s AND t.created_at < %(until)s"
        f"{_scope_clause(grids, 't.grid_id')}) SELECT grid_id, {_MEASURES} FROM per GROUP BY grid_id"
    )
    args = {"since": period.since, "until": period.until, "now": now, "grids": list(grids or ())}
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, args)
        own = {r["grid_id"]: _measures(r) for r in await cur.fetchall()}
        await cur.execute(
            "SELECT id, name, parent_id FROM grids" + (" WHERE id = ANY(%(grids)s)" if grids is not None else ""),
            args,
        )
        registry = {r["id"]: (r["name"], r["parent_id"]) for r in await cur.fetchall()}
    return _tree(registry, own)


def _tree(registry: dict[str, tuple[str, str | None]], own: dict[str, Measures]) -> list[GridAssessment]:
    """Rows with subtree totals, depth first from the roots (a parent outside the registry makes a root)."""
    children: dict[str | None, list[str]] = {}
    for gid, (_, parent) in registry.items():
        children.setdefault(parent if parent in registry else None, []).append(gid)
    out: list[GridAssessment] = []

    def visit(gid: str, level: int, seen: frozenset[str]) -> Measures:
        name, parent = registry[gid]
        row = GridAssessment(gid, name, parent, level, own.get(gid, Measures()), Measures())
        index = len(out)
        out.append(row)
        total = row.own
        for child in sorted(children.get(gid, ())):
            if child not in seen:  # a cycle in parent_id never loops
                total = total + visit(child, level + 1, seen | {child})
        out[index] = replace(row, total=total)
        return total

    for root in sorted(children.get(None, ())):
        visit(root, 0, frozenset({root}))
    return out


async def assess_workers(
    db: Database, *, period: Period, now: datetime, grids: Sequence[str] | None = None
) -> list[WorkerAssessment]:
    """Every worker who was assigned tickets created in the period (in scope), by worker id."""
    sql = (
        f"WITH per AS ({TICKET_TIMELINESS} WHERE t.created_at >= %(since)s AND t.created_at < %(until)s "
        f"AND t.assignee_id IS NOT NULL{_scope_clause(grids, 't.grid_id')}), "
        f"agg AS (SELECT assignee_id, {_MEASURES} FROM per GROUP BY assignee_id) "
        "SELECT agg.*, w.name, w.role, w.grid_id AS worker_grid, g.name AS grid_name FROM agg "
        "LEFT JOIN workers w ON w.id = agg.assignee_id LEFT JOIN grids g ON g.id = w.grid_id "
        "ORDER BY agg.assignee_id"
    )
    args = {"since": period.since, "until": period.until, "now": now, "grids": list(grids or ())}
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, args)
        rows = await cur.fetchall()
    return [
        WorkerAssessment(
            worker_id=r["assignee_id"],
            name=r["name"] or r["assignee_id"],
            role=r["role"],
            grid_id=r["worker_grid"],
            grid_name=r["grid_name"],
            measures=_measures(r),
        )
        for r in rows
    ]
