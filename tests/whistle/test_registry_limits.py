"""Registry input limits and lifecycle: caps, E.164 phones and known tags (errors naming the row), large files in
chunks, a worker id that is a named account's, and an import in mode `replace` that retires what the file no
longer lists — only in the sections it has."""

from __future__ import annotations

import copy

import pytest

from tests.helpers import small_registry
from whistle import users
from whistle.access import Role
from whistle.registry import DeviceDirectory, RegistryError, apply_import, import_registry, parse_registry
from whistle.store.db import Database


def test_the_defects_of_issue_15_are_refused_naming_the_row() -> None:
    """A 1,000,000-character name and a phone of `not a phone` imported fine."""
    doc = small_registry()
    doc["workers"][1]["name"] = "李" * 1_000_000
    doc["households"][0]["contacts"][0]["phone"] = "not a phone"
    with pytest.raises(RegistryError) as err:
        parse_registry(doc)
    text = str(err.value)
    assert "workers.1.name (id W-09): String should have at most 50 characters" in text, text
    assert "households.0.contacts.0.phone (id RJ-H000001)" in text and "pattern" in text, text
    assert len(text) < 2000  # the error names the problem, it does not echo the value


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("households", 0, "tags"), ["lone_elder", "vip"], "households.0.tags.1 (id RJ-H000001)"),
        (("workers", 0, "phone"), "13900000000", "workers.0.phone (id W-17)"),  # E.164 needs the country code
        (("households", 0, "unit"), "x" * 33, "households.0.unit (id RJ-H000001)"),
        (("devices", 0, "location"), "x" * 201, "devices.0.location (id SM-0001)"),
        (("buildings", 0, "location"), [181.0, 31.2], "buildings.0.location.0 (id RJ-B0001)"),
        (("streets", 0, "name"), "", "streets.0.name (id RJ)"),
    ],
)
def test_field_limits(path: tuple[str, int, str], value: object, expected: str) -> None:
    doc = small_registry()
    doc[path[0]][path[1]][path[2]] = value
    with pytest.raises(RegistryError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_registry(doc)


def test_contacts_and_tags_are_bounded() -> None:
    doc = small_registry()
    doc["households"][0]["contacts"] = [{"name": "王某", "phone": "+8613800000000"}] * 11
    with pytest.raises(RegistryError, match="contacts"):
        parse_registry(doc)


async def test_an_unknown_reference_names_the_row(db: Database) -> None:
    doc = small_registry()
    doc["households"].append({"id": "RJ-H9", "building_id": "RJ-B0404"})
    with pytest.raises(RegistryError, match=r"households\[1\] \(id RJ-H9\): building_id RJ-B0404 is neither"):
        await import_registry(db, parse_registry(doc))


async def test_a_large_registry_goes_in_chunks(db: Database) -> None:
    doc = small_registry()
    doc["households"] = [
        {"id": f"RJ-H{i:06d}", "building_id": "RJ-B0001", "unit": f"{i}", "tags": ["rental"] if i % 7 == 0 else []}
        for i in range(2500)
    ]
    doc["devices"] = [{"id": f"WM-{i:06d}", "type": "water", "household_id": f"RJ-H{i:06d}"} for i in range(2500)]
    done = await apply_import(db, parse_registry(doc), chunk_rows=1000)
    assert done.counts["households"] == 2500 and done.counts["devices"] == 2500
    async with db.connection() as conn:
        n = await (await conn.execute("SELECT count(*) FROM households WHERE 'rental' = ANY(tags)")).fetchone()
    assert n == (358,)


async def test_a_worker_may_not_take_a_named_accounts_id(db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()))
    await users.add_user(db, user_id="OPS-1", name="值班", role=Role.OPS_CENTER, grid_id=None, actor="test")
    doc = small_registry()
    doc["workers"].append({"id": "OPS-1", "name": "冒名", "grid_id": "RJ-G1-M01", "role": "grid_worker"})
    with pytest.raises(RegistryError, match=r"workers\[4\] \(id OPS-1\)"):
        await import_registry(db, parse_registry(doc))


async def test_replace_retires_what_the_file_no_longer_lists_in_its_sections(db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()))
    directory = DeviceDirectory(db)
    await directory.load()
    assert directory.get("SM-0003") is not None
    token = await users.issue_token(db, "W-17", actor="test", ttl_s=3600)
    doc = small_registry()
    doc["devices"] = [d for d in doc["devices"] if d["id"] != "SM-0003"]
    doc["workers"] = [w for w in doc["workers"] if w["id"] != "W-17"]
    only = {"devices": doc["devices"], "workers": doc["workers"]}  # no grids, buildings, households: kept
    done = await apply_import(db, parse_registry(only), mode="replace", actor="admin")
    assert done.retired == {"devices": ["SM-0003"], "workers": ["W-17"]}
    await directory.load()
    assert directory.get("SM-0003") is None and directory.get("SM-0001") is not None
    assert await users.authenticate_token(db, token.token) is None  # the retired worker's token is revoked
    # listing them again brings them back
    again = await apply_import(db, parse_registry(small_registry()), mode="replace")
    assert again.retired == {k: [] for k in ("grids", "buildings", "households", "devices", "workers")}
    await directory.load()
    assert directory.get("SM-0003") is not None
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT actor, data->>'mode' FROM audit_events WHERE action = 'registry.import' ORDER BY id"
        )
        assert await cur.fetchall() == [("system", "upsert"), ("admin", "replace"), ("system", "replace")]


def test_registry_documents_stay_deep_copyable() -> None:
    reg = parse_registry(copy.deepcopy(small_registry()))
    assert reg.present == frozenset({"streets", "grids", "buildings", "households", "devices", "workers"})
