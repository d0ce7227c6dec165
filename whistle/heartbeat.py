"""Processes saying they are alive: one row per running process in `role_heartbeats`, refreshed every few
seconds with what it reports about itself (counters, lags, outages it rode out). A clean stop removes the
row; a crashed process's row goes stale, which is how its role is found down (alerts.selfcheck)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from whistle.store.db import Database


@dataclass(frozen=True, slots=True)
class Heartbeat:
    instance: str
    roles: tuple[str, ...]
    host: str
    pid: int
    started_at: datetime
    at: datetime
    details: Mapping[str, Any]


def instance_name(roles: Sequence[str]) -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{'+'.join(roles)}"


async def beat(
    db: Database, *, instance: str, roles: Sequence[str], started_at: datetime, details: Mapping[str, Any]
) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO role_heartbeats (instance, roles, host, pid, started_at, at, details)"
            " VALUES (%s, %s, %s, %s, %s, now(), %s) ON CONFLICT (instance) DO UPDATE SET at = now(),"
            " details = EXCLUDED.details",
            (instance, list(roles), socket.gethostname(), os.getpid(), started_at, Jsonb(dict(details))),
        )


async def leave(db: Database, instance: str) -> None:
    async with db.connection() as conn:
        await conn.execute("DELETE FROM role_heartbeats WHERE instance = %s", (instance,))


async def heartbeats(
    db: Database, *, deployment: str | None = None, fresher_than_s: float | None = None
) -> list[Heartbeat]:
    """Every process's row; or those of one `whistle serve` (`deployment`), beaten within `fresher_than_s`."""
    where: list[str] = []
    args: list[object] = []
    if deployment is not None:
        where.append("details->>'deployment' = %s")
        args.append(deployment)
    if fresher_than_s is not None:
        where.append("at >= now() - make_interval(secs => %s)")
        args.append(fresher_than_s)
    sql = "SELECT instance, roles, host, pid, started_at, at, details FROM role_heartbeats"
    if where:
        sql += " WHERE " + " AND ".join(where)
    async with db.connection() as conn:
        cur = await conn.execute(sql + " ORDER BY instance", args)
        return [Heartbeat(r[0], tuple(r[1]), r[2], r[3], r[4], r[5], r[6] or {}) for r in await cur.fetchall()]


async def forget_older_than(db: Database, seconds: float) -> int:
    async with db.connection() as conn:
        cur = await conn.execute("DELETE FROM role_heartbeats WHERE at < now() - make_interval(secs => %s)", (seconds,))
        return cur.rowcount
