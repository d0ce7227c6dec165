"""Registry changes reach every role before any reading that follows them is judged.

A change (an import, an absence, a tag) takes the next `registry_version` and is announced on the bus as
a control record on every partition of the readings topics. On the durable log the announcement is part
of the change's own transaction, so a reading stored after it is on every partition after it; on Kafka
it is sent once the change committed, before the caller is answered. The rule engine reloads the
registry when it meets the announcement, before the records behind it.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle.bus import TOPIC_PRIORITY, TOPIC_READINGS, Bus, TransactionalBus
from whistle.serde import RegistryChange, encode_registry_change
from whistle.timeutil import now_ms

TOPICS = (TOPIC_PRIORITY, TOPIC_READINGS)


async def next_version(conn: AsyncConnection[TupleRow]) -> int:
    """A new version for the change in `conn`'s transaction, counted in `registry_head` when it commits."""
    cur = await conn.execute("SELECT nextval('registry_version')")
    row = await cur.fetchone()
    assert row is not None
    version = int(row[0])
    await conn.execute("UPDATE registry_head SET version = GREATEST(version, %s)", (version,))
    return version


async def current_version(conn: AsyncConnection[TupleRow]) -> int:
    """The newest committed change's version (not the sequence's: that counts changes not yet committed)."""
    cur = await conn.execute("SELECT version FROM registry_head")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def announce_in(conn: AsyncConnection[TupleRow], bus: Bus | None, what: str) -> RegistryChange:
    """Take a version inside the change's transaction, and announce it there when the bus allows it."""
    change = RegistryChange(await next_version(conn), what, now_ms())
    if isinstance(bus, TransactionalBus):
        for topic in TOPICS:
            await bus.append_broadcast(conn, topic, encode_registry_change(change))
    return change


async def announce_after(bus: Bus | None, change: RegistryChange) -> None:
    """Announce a committed change on a bus that could not take it inside the transaction."""
    if bus is None or isinstance(bus, TransactionalBus):
        return
    for topic in TOPICS:
        await bus.broadcast(topic, encode_registry_change(change))
