"""What the rules need to know about the registry: household tags, grid ancestry and streets.

Loaded from PostgreSQL and refreshed by the engine; rules only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from whistle.absences import load_absences
from whistle.changes import current_version
from whistle.store.db import Database


@dataclass(frozen=True, slots=True)
class HouseholdInfo:
    registered_occupants: int
    tags: frozenset[str]


@dataclass(slots=True)
class Topology:
    """Registry facts by id; an unknown id gets neutral answers, never an error."""

    households: dict[str, HouseholdInfo] = field(default_factory=dict)
    grid_parent: dict[str, str | None] = field(default_factory=dict)
    grid_street: dict[str, str] = field(default_factory=dict)
    absences: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # household → declared (start, end) ms
    version: int = 0  # the registry_version this view reflects (whistle.changes)

    def tagged(self, tag: str) -> frozenset[str]:
        """The households that carry `tag`."""
        return frozenset(h for h, info in self.households.items() if tag in info.tags)

    def lineage(self, grid_id: str | None) -> tuple[str, ...]:
        """The grid and its ancestors, nearest first."""
        out: list[str] = []
        g = grid_id
        while g is not None and g not in out and len(out) < 16:
            out.append(g)
            g = self.grid_parent.get(g)
        return tuple(out)

    def street(self, grid_id: str | None) -> str | None:
        return None if grid_id is None else self.grid_street.get(grid_id)

    def absent(self, household_id: str, ts: int) -> tuple[int, int] | None:
        """The declared absence of the household that covers `ts`, if any."""
        for span in self.absences.get(household_id, ()):
            if span[0] <= ts < span[1]:
                return span
        return None

    def returned_since(self, household_id: str, since: int, until: int) -> int | None:
        """The end of a declared absence that ended in (since, until], if any: the household is back then."""
        best = None
        for start, end in self.absences.get(household_id, ()):
            if since < end <= until and start <= until and (best is None or end > best):
                best = end
        return best

    def has_tag(self, household_id: str | None, tag: str) -> bool:
        if household_id is None:
            return False
        info = self.households.get(household_id)
        return info is not None and tag in info.tags


async def load_topology(db: Database) -> Topology:
    """Read the registry facts the rules use."""
    topo = Topology()
    async with db.connection() as conn:
        topo.version = await current_version(conn)  # first: a change made while we read comes again later
        cur = await conn.execute("SELECT id, registered_occupants, tags FROM households")
        for hid, occupants, tags in await cur.fetchall():
            topo.households[hid] = HouseholdInfo(occupants, frozenset(tags))
        cur = await conn.execute("SELECT id, parent_id, street_id FROM grids")
        for gid, parent, street in await cur.fetchall():
            topo.grid_parent[gid] = parent
            topo.grid_street[gid] = street
        topo.absences = await load_absences(conn)
    return topo
