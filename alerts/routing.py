"""Who a ticket goes to: through the registry's grid hierarchy to a worker (a pure choice)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from whistle.domain import WorkerRole


@dataclass(frozen=True, slots=True)
class Candidate:
    worker_id: str
    grid_id: str | None
    role: WorkerRole


# In a micro-grid the grid worker goes first; walking up, the leader of a parent grid.
_PREFERENCE = (WorkerRole.GRID_WORKER, WorkerRole.GRID_LEADER)


def choose_assignee(grid_chain: Sequence[str], workers: Sequence[Candidate]) -> str | None:
    """The first grid worker (then leader) found walking from the micro-grid up its parents,
    else a street-center worker; ties broken by worker id so the choice is stable."""
    for grid_id in grid_chain:
        here = [w for w in workers if w.grid_id == grid_id]
        for role in _PREFERENCE:
            ids = sorted(w.worker_id for w in here if w.role is role)
            if ids:
                return ids[0]
    center = sorted(w.worker_id for w in workers if w.role is WorkerRole.STREET_CENTER)
    return center[0] if center else None
