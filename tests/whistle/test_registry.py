from __future__ import annotations

import copy

import pytest

from tests.helpers import small_registry
from whistle.domain import DeviceType
from whistle.registry import DeviceDirectory, RegistryError, apply_import, import_registry, parse_registry
from whistle.store.db import Database


def test_invalid_registry_names_every_problem() -> None:
    doc = small_registry()
    doc["devices"][0]["type"] = "gas"
    doc["households"][0]["registered_occupants"] = -1
    doc["devices"].append({"id": "bad id!", "type": "smoke", "building_id": "RJ-B0001"})
    with pytest.raises(RegistryError) as err:
        parse_registry(doc)
    text = str(err.value)
    assert "devices.0.type" in text and "households.0.registered_occupants" in text and "devices.5.id" in text


def test_device_must_be_bound() -> None:
    with pytest.raises(RegistryError, match="household_id or a building_id"):
        parse_registry({"devices": [{"id": "SM-1", "type": "smoke"}]})


def test_not_json() -> None:
    with pytest.raises(RegistryError, match="not JSON"):
        parse_registry(b"{")


async def test_import_is_an_idempotent_upsert(db: Database) -> None:
    reg = parse_registry(small_registry())
    counts = await import_registry(db, reg)
    assert counts == {"streets": 1, "grids": 3, "buildings": 2, "households": 1, "devices": 5, "workers": 4}
    doc = small_registry()
    doc["buildings"][0]["floors"] = 7
    await import_registry(db, parse_registry(doc))
    async with db.connection() as conn:
        n = await (await conn.execute("SELECT count(*) FROM buildings")).fetchone()
        floors = await (await conn.execute("SELECT floors FROM buildings WHERE id = 'RJ-B0001'")).fetchone()
        contacts = await (await conn.execute("SELECT contacts, tags FROM households")).fetchone()
    assert n == (2,) and floors == (7,)
    assert contacts == ([{"name": "王某", "phone": "+8613800000000", "relation": "daughter"}], ["lone_elder"])


async def test_unknown_reference_refuses_the_whole_file(db: Database) -> None:
    doc = copy.deepcopy(small_registry())
    doc["devices"].append({"id": "SM-X", "type": "smoke", "building_id": "NOPE"})
    with pytest.raises(RegistryError, match="unknown id"):
        await import_registry(db, parse_registry(doc))
    async with db.connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM devices")).fetchone() == (0,)


async def test_directory_places_devices_and_reloads_for_unknown_ones(db: Database) -> None:
    directory = DeviceDirectory(db)
    await directory.load()
    assert len(directory) == 0
    await import_registry(db, parse_registry(small_registry()))
    found = await directory.resolve(["WM-000001", "SM-0003", "NOPE"])
    assert set(found) == {"WM-000001", "SM-0003"}
    wm = found["WM-000001"]
    assert (wm.device_type, wm.household_id, wm.building_id, wm.grid_id) == (
        DeviceType.WATER,
        "RJ-H000001",
        "RJ-B0001",
        "RJ-G1-M01",
    )
    assert found["SM-0003"].grid_id == "RJ-G1-M02"


async def test_a_device_registered_by_another_process_is_placed_from_its_first_message(db: Database) -> None:
    # whistle serve: the API's process imports, the collector's directory was loaded a moment before
    directory = DeviceDirectory(db)
    await directory.load()
    await import_registry(db, parse_registry(small_registry()))
    assert set(await directory.resolve(["WM-000001", "SM-0003"])) == {"WM-000001", "SM-0003"}
    assert await directory.resolve(["NOPE"]) == {}


async def test_a_retirement_elsewhere_reaches_the_directory_on_refresh(db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()))
    directory = DeviceDirectory(db)
    await directory.load()
    assert directory.get("SM-0003") is not None
    assert await directory.refresh() is False  # nothing changed: no reload
    doc = small_registry()
    doc = {"devices": [d for d in doc["devices"] if d["id"] != "SM-0003"]}
    await apply_import(db, parse_registry(doc), actor="test", mode="replace")
    assert await directory.refresh() is True
    assert directory.get("SM-0003") is None and directory.get("WM-000001") is not None


async def test_the_committed_version_ignores_a_change_not_yet_committed(db: Database) -> None:
    from whistle.changes import current_version, next_version

    async with db.connection() as reader:
        before = await current_version(reader)
    async with db.connection() as writer, writer.transaction():
        taken = await next_version(writer)
        async with db.connection() as reader:
            assert await current_version(reader) == before  # the sequence already says `taken`
    async with db.connection() as reader:
        assert await current_version(reader) == taken
