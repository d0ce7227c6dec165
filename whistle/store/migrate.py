"""Versioned SQL migrations, applied at start, recorded, and safe to run from several processes at once."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

# Any constant shared by all processes of the project; pg_advisory_lock serialises them.
_LOCK_ID = 0x57484953  # "WHIS"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's schema history does not match this code's migrations."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped in whistle/store/migrations, in version order."""
    found: list[Migration] = []
    for entry in resources.files("whistle.store").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


async def migrate(conninfo: str) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    migrations = load_migrations()
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
            done = {int(v): str(c) for v, c in await cur.fetchall()}
            for mig in migrations:
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.version:04d}_{mig.name} was changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
                log.info("applied migration %04d_%s", mig.version, mig.name)
                applied_now.append(mig.version)
            unknown = sorted(set(done) - {m.version for m in migrations})
            if unknown:
                raise MigrationError(f"database has migrations this code does not know: {unknown}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now
