"""The registry (CONTRACT.md §2): validated, imported idempotently (upsert by id), and looked up.

Import is one transaction with deferred foreign keys, so the order of entries inside a
file does not matter, and a file that refers to an id it does not define (and the database
does not have) is refused whole with the row and the reference named. Every field has a length
cap, phones are E.164 and tags are the known ones; rows go to the database in chunks.

An import in mode `replace` also retires what the file no longer lists (in the sections it has):
retired entries stay (tickets and readings point at them) but no longer count — a retired device's
messages are dead letters and its broker account is revoked, a retired worker can no longer sign in
and is routed no tickets. Listing an entry again brings it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from whistle import audit
from whistle.access import Scope
from whistle.bus import Bus
from whistle.changes import announce_after, announce_in, current_version
from whistle.domain import DeviceType, WorkerRole
from whistle.errors import Invalid, NotFound
from whistle.store.db import Database

ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Lon = Annotated[float, Field(ge=-180, le=180)]
Lat = Annotated[float, Field(ge=-90, le=90)]
LonLat = tuple[Lon, Lat]
Name = Annotated[str, Field(min_length=1, max_length=100)]
PersonName = Annotated[str, Field(min_length=1, max_length=50)]
Phone = Annotated[str, Field(pattern=E164_PATTERN, description="E.164, e.g. +8613800000000")]
HouseholdTag = Literal["lone_elder", "rental"]  # CONTRACT.md §2: the known household tags
SECTIONS = ("streets", "grids", "buildings", "households", "devices", "workers")
RETIRABLE = ("grids", "buildings", "households", "devices", "workers")
ImportMode = Literal["upsert", "replace"]


class RegistryError(Invalid):
    """A registry that cannot be imported, with what is wrong in it."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Street(_Entry):
    id: Id
    name: Name


class Grid(_Entry):
    id: Id
    street_id: Id
    parent_id: Id | None = None
    name: Name
    polygon: list[LonLat] | None = Field(default=None, max_length=2000)


class Building(_Entry):
    id: Id
    grid_id: Id
    address: str = Field(default="", max_length=200)
    location: LonLat | None = None
    floors: int | None = Field(default=None, ge=0, le=300)


class Contact(_Entry):
    name: PersonName
    phone: Phone | None = None
    relation: str | None = Field(default=None, max_length=32)


class Household(_Entry):
    id: Id
    building_id: Id
    unit: str = Field(default="", max_length=32)
    registered_occupants: int = Field(default=1, ge=0, le=100)
    tags: list[HouseholdTag] = Field(default_factory=list, max_length=8)
    contacts: list[Contact] = Field(default_factory=list, max_length=10)


class Device(_Entry):
    id: Id
    type: DeviceType
    household_id: Id | None = None
    building_id: Id | None = None
    location: str | None = Field(default=None, max_length=200)
    gateway_id: Id | None = None  # the gateway or concentrator it reaches the network through (optional)

    @model_validator(mode="after")
    def _bound(self) -> Device:
        if self.household_id is None and self.building_id is None:
            raise ValueError("a device is bound to a household_id or a building_id")
        return self


class Worker(_Entry):
    id: Id
    name: PersonName
    phone: Phone | None = None
    grid_id: Id | None = None
    role: WorkerRole


class Registry(_Entry):
    """The whole registry document; every list optional."""

    streets: list[Street] = Field(default_factory=list)
    grids: list[Grid] = Field(default_factory=list)
    buildings: list[Building] = Field(default_factory=list)
    households: list[Household] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    workers: list[Worker] = Field(default_factory=list)
    # The sections the document has (an import in mode `replace` retires only within those).
    present: frozenset[str] = frozenset(SECTIONS)


def _row_id(obj: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """` (id X)` for the row an error location points into, when it has an id."""
    if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
        rows = obj.get(loc[0])
        if isinstance(rows, list) and loc[1] < len(rows) and isinstance(rows[loc[1]], dict):
            rid = rows[loc[1]].get("id")
            if isinstance(rid, str):
                return f" (id {rid[:64]})"
    return ""


def parse_registry(data: bytes | str | dict[str, Any]) -> Registry:
    """Validate a registry document, or raise RegistryError naming every problem (first 20) and its row."""
    try:
        obj = json.loads(data) if isinstance(data, bytes | str) else data
    except json.JSONDecodeError as exc:
        raise RegistryError(f"registry is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise RegistryError("registry must be a JSON object")
    present = frozenset(k for k in SECTIONS if k in obj)
    try:
        return Registry.model_validate({**{k: v for k, v in obj.items() if k != "present"}, "present": present})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}{_row_id(obj, tuple(e['loc']))}: {e['msg']}"
            for e in exc.errors()[:20]
        ]
        more = f" (and {exc.error_count() - 20} more)" if exc.error_count() > 20 else ""
        raise RegistryError("invalid registry: " + "; ".join(problems) + more) from exc


_UPSERTS: dict[str, str] = {
    "streets": "INSERT INTO streets (id, name) VALUES (%s, %s) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
    "grids": "INSERT INTO grids (id, street_id, parent_id, name, polygon) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET street_id = EXCLUDED.street_id, parent_id = EXCLUDED.parent_id, "
    "name = EXCLUDED.name, polygon = EXCLUDED.polygon, retired_at = NULL, updated_at = now()",
    "buildings": "INSERT INTO buildings (id, grid_id, address, lon, lat, floors) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET grid_id = EXCLUDED.grid_id, address = EXCLUDED.address, "
    "lon = EXCLUDED.lon, lat = EXCLUDED.lat, floors = EXCLUDED.floors, retired_at = NULL, updated_at = now()",
    "households": "INSERT INTO households (id, building_id, unit, registered_occupants, tags, contacts) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET building_id = EXCLUDED.building_id, unit = EXCLUDED.unit, "
    "registered_occupants = EXCLUDED.registered_occupants, tags = EXCLUDED.tags, "
    "contacts = EXCLUDED.contacts, retired_at = NULL, updated_at = now()",
    "devices": "INSERT INTO devices (id, type, household_id, building_id, location, gateway_id) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, household_id = EXCLUDED.household_id, "
    "building_id = EXCLUDED.building_id, location = EXCLUDED.location, gateway_id = EXCLUDED.gateway_id, "
    "retired_at = NULL, updated_at = now()",
    "workers": "INSERT INTO workers (id, name, phone, grid_id, role) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, "
    "grid_id = EXCLUDED.grid_id, role = EXCLUDED.role, retired_at = NULL, updated_at = now()",
}


def _rows(reg: Registry) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "streets": [(s.id, s.name) for s in reg.streets],
        "grids": [
            (g.id, g.street_id, g.parent_id, g.name, Jsonb(g.polygon) if g.polygon is not None else None)
            for g in reg.grids
        ],
        "buildings": [
            (
                b.id,
                b.grid_id,
                b.address,
                b.location[0] if b.location else None,
                b.location[1] if b.location else None,
                b.floors,
            )
            for b in reg.buildings
        ],
        "households": [
            (
                h.id,
                h.building_id,
                h.unit,
                h.registered_occupants,
                list(h.tags),
                Jsonb([c.model_dump(exclude_none=True) for c in h.contacts]),
            )
            for h in reg.households
        ],
        "devices": [(d.id, d.type.value, d.household_id, d.building_id, d.location, d.gateway_id) for d in reg.devices],
        "workers": [(w.id, w.name, w.phone, w.grid_id, w.role.value) for w in reg.workers],
    }


# The references of each section: (field, table it points to, section of the file that defines it).
_REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "grids": (("street_id", "streets"), ("parent_id", "grids")),
    "buildings": (("grid_id", "grids"),),
    "households": (("building_id", "buildings"),),
    "devices": (("household_id", "households"), ("building_id", "buildings")),
    "workers": (("grid_id", "grids"),),
}


@dataclass(frozen=True, slots=True)
class RegistryImport:
    """What an import did: rows upserted per section, and (mode `replace`) the ids it retired."""

    counts: dict[str, int]
    retired: dict[str, list[str]]


async def _check_references(conn: AsyncConnection[TupleRow], reg: Registry) -> None:
    """Refuse a file that points at an id neither it nor the registry has, naming the row."""
    defined = {section: {e.id for e in getattr(reg, section)} for section in SECTIONS}
    for section, refs in _REFERENCES.items():
        for field, target in refs:
            wanted = {getattr(e, field) for e in getattr(reg, section)} - defined[target] - {None}
            if not wanted:
                continue
            cur = await conn.execute(f"SELECT id FROM {target} WHERE id = ANY(%s)", (sorted(wanted),))
            known = {r[0] for r in await cur.fetchall()}
            for i, entry in enumerate(getattr(reg, section)):
                ref = getattr(entry, field)
                if ref is not None and ref not in defined[target] and ref not in known:
                    raise RegistryError(
                        f"registry refers to an unknown id: {section}[{i}] (id {entry.id}): {field} {ref} "
                        f"is neither in this file nor in the registry"
                    )


async def _check_worker_ids(conn: AsyncConnection[TupleRow], reg: Registry) -> None:
    """A registry worker may not take the id of a named account (or of the bootstrap admin)."""
    ids = [w.id for w in reg.workers]
    if not ids:
        return
    cur = await conn.execute("SELECT id FROM users WHERE id = ANY(%s)", (ids,))
    taken = {r[0] for r in await cur.fetchall()} | {"admin"}
    for i, w in enumerate(reg.workers):
        if w.id in taken:
            raise RegistryError(f"workers[{i}] (id {w.id}): the id is a named account's; choose another")


async def _retire_unlisted(conn: AsyncConnection[TupleRow], reg: Registry) -> dict[str, list[str]]:
    """Mode `replace`: retire the entries of the file's sections that the file no longer lists."""
    retired: dict[str, list[str]] = {}
    for section in RETIRABLE:
        if section not in reg.present:
            continue
        listed = [e.id for e in getattr(reg, section)]
        cur = await conn.execute(
            f"UPDATE {section} SET retired_at = now(), updated_at = now() "
            "WHERE retired_at IS NULL AND NOT (id = ANY(%s)) RETURNING id",
            (listed,),
        )
        retired[section] = sorted(r[0] for r in await cur.fetchall())
    await retire_consequences(conn, devices=retired.get("devices", []), workers=retired.get("workers", []))
    return retired


async def retire_consequences(
    conn: AsyncConnection[TupleRow], *, devices: Sequence[str], workers: Sequence[str]
) -> None:
    """What retiring takes away at once: devices' broker accounts; workers' tokens, sessions, password, shifts.

    (Their open alarms and tickets are the alerts side's to clear and reassign.)"""
    if devices:
        await conn.execute(
            "UPDATE broker_accounts SET revoked_at = now() WHERE kind = 'device' AND revoked_at IS NULL "
            "AND username = ANY(%s)",
            (list(devices),),
        )
    if workers:
        ids = list(workers)
        await conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE user_id = ANY(%s) AND revoked_at IS NULL", (ids,)
        )
        await conn.execute(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = ANY(%s) AND revoked_at IS NULL", (ids,)
        )
        await conn.execute("DELETE FROM passwords WHERE user_id = ANY(%s)", (ids,))
        await conn.execute("DELETE FROM duty_shifts WHERE worker_id = ANY(%s)", (ids,))


async def apply_import(
    db: Database,
    reg: Registry,
    *,
    actor: str = audit.SYSTEM,
    mode: ImportMode = "upsert",
    chunk_rows: int = 1000,
    bus: Bus | None = None,
) -> RegistryImport:
    """Upsert every entry in one transaction, in chunks of `chunk_rows`; in mode `replace` retire the unlisted.

    With a `bus`, the change is announced there (whistle.changes), so every role takes it before it judges
    any reading sent after this returns."""
    rows = _rows(reg)
    retired: dict[str, list[str]] = {}
    try:
        async with db.connection() as conn, conn.transaction():
            await _check_references(conn, reg)
            await _check_worker_ids(conn, reg)
            async with conn.cursor() as cur:
                for section, sql in _UPSERTS.items():
                    for start in range(0, len(rows[section]), chunk_rows):
                        await cur.executemany(sql, rows[section][start : start + chunk_rows])
            if mode == "replace":
                retired = await _retire_unlisted(conn, reg)
            counts = {section: len(r) for section, r in rows.items()}
            await audit.record(
                conn,
                actor=actor,
                action="registry.import",
                target_type="registry",
                data={"mode": mode, "counts": counts, "retired": {k: len(v) for k, v in retired.items()}},
            )
            await conn.execute("NOTIFY whistle_registry")
            change = await announce_in(conn, bus, "registry")
    except psycopg.errors.ForeignKeyViolation as exc:
        detail = exc.diag.message_detail or str(exc)
        raise RegistryError(f"registry refers to an unknown id: {detail}") from exc
    except psycopg.errors.DataError as exc:
        raise RegistryError(f"registry has a value the database refuses: {exc.diag.message_primary}") from exc
    await announce_after(bus, change)
    return RegistryImport(counts, retired)


async def import_registry(
    db: Database, reg: Registry, *, actor: str = audit.SYSTEM, bus: Bus | None = None
) -> dict[str, int]:
    """Upsert every entry in one transaction; returns the count per section."""
    return (await apply_import(db, reg, actor=actor, bus=bus)).counts


async def remove_tag(db: Database, household_id: str, tag: str, *, actor: str, bus: Bus | None = None) -> list[str]:
    """Take a tag off a household (announced on `bus`: the rules take it at once); returns the tags left."""
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE households SET tags = array_remove(tags, %s), updated_at = now() WHERE id = %s RETURNING tags",
            (tag, household_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"household {household_id} not found")
        await audit.record(
            conn,
            actor=actor,
            action="household.tag_removed",
            target_type="household",
            target_id=household_id,
            data={"tag": tag},
        )
        await conn.execute("NOTIFY whistle_registry")
        change = await announce_in(conn, bus, "tag")
    await announce_after(bus, change)
    return list(row[0])


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a registered device is: its type and the household, building and grid it belongs to."""

    device_type: DeviceType
    household_id: str | None
    building_id: str | None
    grid_id: str | None


_PLACEMENTS = (
    "SELECT d.id, d.type, d.household_id, COALESCE(d.building_id, h.building_id), b.grid_id "
    "FROM devices d LEFT JOIN households h ON h.id = d.household_id "
    "LEFT JOIN buildings b ON b.id = COALESCE(d.building_id, h.building_id) WHERE d.retired_at IS NULL"
)


class DeviceDirectory:
    """An in-memory copy of device placements, for a collector that may run apart from the API.

    A device it does not know is looked up by id before its message is refused (one indexed query per
    batch that has any), so a device registered through another process is accepted from its first
    message. `refresh()` reloads everything when the registry's committed version moved (the collector
    asks every second), so a retirement or a move made elsewhere reaches it within a second.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._placements: dict[str, Placement] = {}
        self.version = -1  # the committed registry version the copy reflects (whistle.changes)

    def __len__(self) -> int:
        return len(self._placements)

    async def load(self) -> None:
        """Reload every placement from the database."""
        async with self._db.connection() as conn:
            version = await current_version(conn)  # first: a change committed while we read is seen again
            rows = await (await conn.execute(_PLACEMENTS)).fetchall()
        self._placements = {r[0]: Placement(DeviceType(r[1]), r[2], r[3], r[4]) for r in rows}
        self.version = version

    async def refresh(self) -> bool:
        """Reload if the registry changed since the last load; whether it did."""
        async with self._db.connection() as conn:
            version = await current_version(conn)
        if version == self.version:
            return False
        await self.load()
        return True

    def get(self, device_id: str) -> Placement | None:
        return self._placements.get(device_id)

    async def resolve(self, device_ids: Sequence[str]) -> dict[str, Placement]:
        """Placements for the given ids; the unknown ones are looked up in the database first."""
        missing = sorted({d for d in device_ids if d not in self._placements})
        if missing:
            async with self._db.connection() as conn:
                cur = await conn.execute(_PLACEMENTS + " AND d.id = ANY(%s)", (missing,))
                for r in await cur.fetchall():
                    self._placements[r[0]] = Placement(DeviceType(r[1]), r[2], r[3], r[4])
        return {d: p for d in device_ids if (p := self._placements.get(d)) is not None}


@dataclass(frozen=True, slots=True)
class WorkerView:
    id: str
    name: str
    role: WorkerRole
    grid_id: str | None
    phone: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class HouseholdView:
    id: str
    building_id: str
    grid_id: str | None
    unit: str
    registered_occupants: int
    tags: list[str]
    contacts: list[dict[str, Any]]
    retired: bool
    erased: bool


async def list_workers(db: Database, *, scope: Scope | None = None, include_retired: bool = False) -> list[WorkerView]:
    """Registry workers within `scope` (by their grid), by id."""
    in_scope, args = (scope or Scope.everything()).grid_sql("grid_id")
    active = "" if include_retired else " AND retired_at IS NULL"
    async with db.connection() as conn:
        cur = await conn.execute(
            f"SELECT id, name, role, grid_id, phone, retired_at IS NULL FROM workers WHERE {in_scope}{active} "
            "ORDER BY id LIMIT 10000",
            tuple(args),
        )
        rows = await cur.fetchall()
    return [WorkerView(r[0], r[1], WorkerRole(r[2]), r[3], r[4], r[5]) for r in rows]


async def get_household(db: Database, household_id: str, *, scope: Scope | None = None) -> HouseholdView | None:
    """A household with its building's grid (None if it does not exist or lies outside `scope`)."""
    in_scope, args = (scope or Scope.everything()).grid_sql("b.grid_id")
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT h.id, h.building_id, b.grid_id, h.unit, h.registered_occupants, h.tags, h.contacts, "
            "h.retired_at IS NOT NULL, h.erased_at IS NOT NULL FROM households h "
            f"JOIN buildings b ON b.id = h.building_id WHERE h.id = %s AND {in_scope}",
            (household_id, *args),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return HouseholdView(row[0], row[1], row[2], row[3], row[4], list(row[5]), list(row[6]), row[7], row[8])
