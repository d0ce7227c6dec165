"""The registry (CONTRACT.md §2): validated, imported idempotently (upsert by id), and looked up.

Import is one transaction with deferred foreign keys, so the order of entries inside a
file does not matter, and a file that refers to an id it does not define (and the database
does not have) is refused whole with the reference named.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from whistle.bus import Bus
from whistle.changes import announce_after, announce_in
from whistle.domain import DeviceType, WorkerRole
from whistle.errors import Invalid
from whistle.store.db import Database

ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]
LonLat = tuple[float, float]


class RegistryError(Invalid):
    """A registry that cannot be imported, with what is wrong in it."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Street(_Entry):
    id: Id
    name: str


class Grid(_Entry):
    id: Id
    street_id: Id
    parent_id: Id | None = None
    name: str
    polygon: list[LonLat] | None = None


class Building(_Entry):
    id: Id
    grid_id: Id
    address: str = ""
    location: LonLat | None = None
    floors: int | None = Field(default=None, ge=0, le=300)


class Contact(_Entry):
    name: str
    phone: str | None = None
    relation: str | None = None


class Household(_Entry):
    id: Id
    building_id: Id
    unit: str = ""
    registered_occupants: int = Field(default=1, ge=0, le=100)
    tags: list[str] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)


class Device(_Entry):
    id: Id
    type: DeviceType
    household_id: Id | None = None
    building_id: Id | None = None
    location: str | None = None
    gateway_id: Id | None = None  # the gateway or concentrator it reaches the network through (optional)

    @model_validator(mode="after")
    def _bound(self) -> Device:
        if self.household_id is None and self.building_id is None:
            raise ValueError("a device is bound to a household_id or a building_id")
        return self


class Worker(_Entry):
    id: Id
    name: str
    phone: str | None = None
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


def parse_registry(data: bytes | str | dict[str, Any]) -> Registry:
    """Validate a registry document, or raise RegistryError naming every problem (first 20)."""
    try:
        obj = json.loads(data) if isinstance(data, bytes | str) else data
    except json.JSONDecodeError as exc:
        raise RegistryError(f"registry is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise RegistryError("registry must be a JSON object")
    try:
        return Registry.model_validate(obj)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:20]]
        raise RegistryError("invalid registry: " + "; ".join(problems)) from exc


_UPSERTS: dict[str, str] = {
    "streets": "INSERT INTO streets (id, name) VALUES (%s, %s) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
    "grids": "INSERT INTO grids (id, street_id, parent_id, name, polygon) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET street_id = EXCLUDED.street_id, parent_id = EXCLUDED.parent_id, "
    "name = EXCLUDED.name, polygon = EXCLUDED.polygon, updated_at = now()",
    "buildings": "INSERT INTO buildings (id, grid_id, address, lon, lat, floors) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET grid_id = EXCLUDED.grid_id, address = EXCLUDED.address, "
    "lon = EXCLUDED.lon, lat = EXCLUDED.lat, floors = EXCLUDED.floors, updated_at = now()",
    "households": "INSERT INTO households (id, building_id, unit, registered_occupants, tags, contacts) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET building_id = EXCLUDED.building_id, unit = EXCLUDED.unit, "
    "registered_occupants = EXCLUDED.registered_occupants, tags = EXCLUDED.tags, "
    "contacts = EXCLUDED.contacts, updated_at = now()",
    "devices": "INSERT INTO devices (id, type, household_id, building_id, location, gateway_id) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, household_id = EXCLUDED.household_id, "
    "building_id = EXCLUDED.building_id, location = EXCLUDED.location, gateway_id = EXCLUDED.gateway_id, "
    "updated_at = now()",
    "workers": "INSERT INTO workers (id, name, phone, grid_id, role) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, "
    "grid_id = EXCLUDED.grid_id, role = EXCLUDED.role, updated_at = now()",
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


async def import_registry(db: Database, reg: Registry, *, bus: Bus | None = None) -> dict[str, int]:
    """Upsert every entry in one transaction; returns the count per section.

    With a `bus`, the change is announced there (whistle.changes), so every role takes it before it
    judges any reading sent after this returns."""
    rows = _rows(reg)
    try:
        async with db.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                for section, sql in _UPSERTS.items():
                    if rows[section]:
                        await cur.executemany(sql, rows[section])
                await cur.execute("NOTIFY whistle_registry")
            change = await announce_in(conn, bus, "registry")
    except psycopg.errors.ForeignKeyViolation as exc:
        detail = exc.diag.message_detail or str(exc)
        raise RegistryError(f"registry refers to an unknown id: {detail}") from exc
    await announce_after(bus, change)
    return {section: len(r) for section, r in rows.items()}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a registered device is: its type and the household, building and grid it belongs to."""

    device_type: DeviceType
    household_id: str | None
    building_id: str | None
    grid_id: str | None


class DeviceDirectory:
    """An in-memory copy of device placements, reloaded when an unknown device is asked for.

    The reload is rate-limited (at most once per `min_reload_s`) so that a flood of messages
    from unregistered devices costs one query a second, not one per message.
    """

    def __init__(self, db: Database, *, min_reload_s: float = 1.0) -> None:
        self._db = db
        self._min_reload_s = min_reload_s
        self._placements: dict[str, Placement] = {}
        self._loaded_at = float("-inf")

    def __len__(self) -> int:
        return len(self._placements)

    async def load(self) -> None:
        """Reload every placement from the database."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT d.id, d.type, d.household_id, COALESCE(d.building_id, h.building_id), b.grid_id "
                "FROM devices d LEFT JOIN households h ON h.id = d.household_id "
                "LEFT JOIN buildings b ON b.id = COALESCE(d.building_id, h.building_id)"
            )
            rows = await cur.fetchall()
        self._placements = {r[0]: Placement(DeviceType(r[1]), r[2], r[3], r[4]) for r in rows}
        self._loaded_at = time.monotonic()

    def get(self, device_id: str) -> Placement | None:
        return self._placements.get(device_id)

    async def resolve(self, device_ids: Sequence[str]) -> dict[str, Placement]:
        """Placements for the given ids, reloading once (rate-limited) if any is unknown."""
        missing = [d for d in device_ids if d not in self._placements]
        if missing and time.monotonic() - self._loaded_at >= self._min_reload_s:
            await self.load()
        return {d: p for d in device_ids if (p := self._placements.get(d)) is not None}
