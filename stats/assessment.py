"""The assessment table (扶余's quarterly review by count and timeliness): per grid and per worker over a period.

For the tickets created in the period: how many, how many acknowledged and on site on time (the
share of those assessed, against each ticket's frozen policy: stats/timeliness.py), mean time to
acknowledge (MTTA, from the escalation base to the first response), to arrive, and to resolve
(MTTR, from creation), and the share of resolved tickets that were false alarms.

The SQL returns additive measures per micro-grid (or per assignee): for the whole local days of the
period from the rollup of resolved tickets (stats/rollups.py) plus, live, the open tickets, those
resolved after its watermark and the partial days at the edges. Means and shares are computed here,
and a parent grid's row is the sum of its subtree, so a comprehensive grid's leader sees their
residential areas and micro-grids with the same figures added up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from psycopg.rows import dict_row

from stats.rollups import ROLLED, advance_tickets, watermark, whole_days
from stats.timeliness import MEASURES, MEASURES_SQL, TICKET_TIMELINESS
from whistle.errors import Invalid
from whistle.store.db import Database


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
        return Measures(*(getattr(self, f) + getattr(other, f) for f in MEASURES))

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
    return Measures(**{f: row[f] for f in MEASURES})  # type: ignore[arg-type]


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


_OPEN = "t.status IN ('dispatched', 'acknowledged', 'on_site')"


async def measures_by(
    db: Database,
    key: Literal["grid_id", "assignee_id"],
    *,
    period: Period,
    now: datetime,
    grids: Sequence[str] | None = None,
) -> dict[str | None, Measures]:
    """The measures of the tickets created in the period, per grid or per assignee, in one snapshot."""
    scope = _scope_clause(grids, "t.grid_id")
    days = whole_days(period.since, period.until)
    args: dict[str, object] = {"since": period.since, "until": period.until, "now": now, "grids": list(grids or ())}
    if days is None:
        live = f"{TICKET_TIMELINESS} WHERE t.created_at >= %(since)s AND t.created_at < %(until)s{scope}"
        sql = f"SELECT {key} AS key, {MEASURES_SQL} FROM ({live}) per GROUP BY 1"
    else:
        args.update(start=days.start, end=days.end, first=days.first, stop=days.stop)
        pieces = [
            "t.created_at >= %(since)s AND t.created_at < %(start)s",  # the partial day before
            "t.created_at >= %(end)s AND t.created_at < %(until)s",  # and after the whole days
            f"t.created_at >= %(start)s AND t.created_at < %(end)s AND {_OPEN}",  # still open
            "t.created_at >= %(start)s AND t.created_at < %(end)s AND t.resolved_at >= %(mark)s",  # since the mark
        ]
        live = " UNION ALL ".join(f"{TICKET_TIMELINESS} WHERE {p}{scope}" for p in pieces)
        rolled_cols = ", ".join(f"sum({m}) AS {m}" if m in ROLLED else f"0 AS {m}" for m in MEASURES)
        totals = ", ".join(f"sum({m})::{'float8' if m.endswith('_s') else 'int'} AS {m}" for m in MEASURES)
        sql = (
            f"WITH live AS (SELECT {key} AS key, {MEASURES_SQL} FROM ({live}) per GROUP BY 1), "
            f"rolled AS (SELECT NULLIF({key}, '') AS key, {rolled_cols} FROM ticket_days "
            f"WHERE day >= %(first)s AND day < %(stop)s{_scope_clause(grids)} GROUP BY 1) "
            f"SELECT key, {totals} FROM (SELECT * FROM live UNION ALL SELECT * FROM rolled) x GROUP BY key"
        )
    async with db.connection() as conn:
        if days is not None:
            await advance_tickets(conn, now)
        async with conn.transaction():
            # one snapshot for the mark, the rollup and the live rows: each ticket is counted once
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if days is not None:
                args["mark"] = await watermark(conn, "tickets")
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(sql, args, prepare=False)
                return {r["key"]: _measures(r) for r in await cur.fetchall()}


async def assess_grids(
    db: Database, *, period: Period, now: datetime, grids: Sequence[str] | None = None
) -> list[GridAssessment]:
    """Every grid in scope with its tickets created in the period, parents before their children."""
    own = {k: m for k, m in (await measures_by(db, "grid_id", period=period, now=now, grids=grids)).items() if k}
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, name, parent_id FROM grids" + (" WHERE id = ANY(%(grids)s)" if grids is not None else ""),
            {"grids": list(grids or ())},
            prepare=False,
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
    found = await measures_by(db, "assignee_id", period=period, now=now, grids=grids)
    ids = sorted(k for k in found if k)
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT w.id, w.name, w.role, w.grid_id, g.name AS grid_name FROM workers w "
            "LEFT JOIN grids g ON g.id = w.grid_id WHERE w.id = ANY(%s)",
            (ids,),
            prepare=False,
        )
        workers = {r["id"]: r for r in await cur.fetchall()}
    out = []
    for wid in ids:
        w = workers.get(wid, {})
        out.append(
            WorkerAssessment(
                worker_id=wid,
                name=w.get("name") or wid,
                role=w.get("role"),
                grid_id=w.get("grid_id"),
                grid_name=w.get("grid_name"),
                measures=found[wid],
            )
        )
    return out
