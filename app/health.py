"""Health for containers: a heartbeat file for the roles that serve no HTTP, and `whistle health`.

`whistle run collector|rules|alerts` listens on no port, so a container healthcheck cannot ask
`/api/v1/health` of it. With `WHISTLE_HEALTH_FILE` set, a process writes a heartbeat there every
`HEARTBEAT_S` once its roles run — the same fields as `/api/v1/health` (status, database, roles,
details) and the time — and removes it when it stops. `whistle health --file F` is healthy while the
file says `ok` and is fresher than `--max-age`; without a file, `whistle health` asks
`GET /api/v1/health` on `WHISTLE_HTTP` (the image's HEALTHCHECK, for `whistle serve` and `run api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from whistle import __version__
from whistle.settings import Settings
from whistle.timeutil import now_ms

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
DEFAULT_MAX_AGE_S = 3 * HEARTBEAT_S


async def write_heartbeats(
    path: Path,
    *,
    roles: Sequence[str],
    ping: Callable[[], Awaitable[str]],
    details: Callable[[], Mapping[str, Any]],
    stop: asyncio.Event,
    every_s: float = HEARTBEAT_S,
) -> None:
    """Write the heartbeat every `every_s` until `stop`; then remove it."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        while not stop.is_set():
            try:
                database = await ping()
                doc = {
                    "status": "ok" if database == "ok" else "degraded",
                    "version": __version__,
                    "database": database,
                    "roles": list(roles),
                    "details": dict(details()),
                    "at": now_ms(),
                    "pid": os.getpid(),
                }
                tmp.write_text(json.dumps(doc), encoding="utf-8")
                os.replace(tmp, path)  # readers never see half a file
            except Exception:
                log.exception("could not write the heartbeat to %s", path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    finally:
        for p in (path, tmp):
            with contextlib.suppress(OSError):
                p.unlink()


def check_file(path: Path, *, max_age_s: float, now: int | None = None) -> tuple[bool, str]:
    """(healthy, why) from a heartbeat file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no heartbeat at {path} (not started, or stopped)"
    except (OSError, ValueError) as exc:
        return False, f"unreadable heartbeat {path}: {exc}"
    age_s = ((now if now is not None else now_ms()) - int(doc.get("at", 0))) / 1000
    if age_s > max_age_s:
        return False, f"heartbeat is {age_s:.0f} s old (more than {max_age_s:.0f} s)"
    if doc.get("status") != "ok":
        return False, f"status {doc.get('status')!r}, database {doc.get('database')!r}"
    return True, f"ok: {', '.join(doc.get('roles', []))}, heartbeat {age_s:.0f} s old"


def health_url(settings: Settings) -> str:
    """`/api/v1/health` on this process's WHISTLE_HTTP, reached on loopback when it listens on all interfaces."""
    host = settings.http_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a listening address we translate, not one we bind
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}/api/v1/health"


def check_http(url: str, *, timeout_s: float) -> tuple[bool, str]:
    """(healthy, why) from GET /api/v1/health."""
    if not url.startswith(("http://", "https://")):
        return False, f"not an HTTP URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - scheme checked above
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"
    if doc.get("status") != "ok":
        return False, f"{url}: status {doc.get('status')!r}, database {doc.get('database')!r}"
    return True, f"ok: {', '.join(doc.get('roles', []))}"
