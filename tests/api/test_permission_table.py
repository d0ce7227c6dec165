"""The endpoint × role table of docs/PERMISSIONS.md covers every route of the API, and agrees with the code's
permissions where they can be compared without a server (the walk against a running service is
tests/e2e/test_permissions.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Route

from alerts.service import AlertService
from api.app import create_app
from api.deps import ApiContext
from tests.permission_table import read_table
from whistle.access import ROLE_PERMISSIONS, Role
from whistle.store.db import Database


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for r in routes:
        original = getattr(r, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
        if original is not None:
            yield from _walk(original.routes, prefix + r.include_context.prefix)
        elif isinstance(r, APIWebSocketRoute):
            yield "WS", prefix + r.path
        elif isinstance(r, APIRoute | Route):
            yield from ((m, prefix + r.path) for m in (r.methods or ()) if m != "HEAD")


def app_routes() -> set[tuple[str, str]]:
    db = Database("postgresql://unused@127.0.0.1/unused")  # never started: the routes are only listed
    app = create_app(ApiContext(db=db, alerts=AlertService(db), admin_token="x" * 32))
    return set(_walk(app.routes))


def test_the_table_lists_every_route_and_only_routes() -> None:
    roles, rows = read_table()
    assert sorted(roles) == sorted(["anonymous", *(r.value for r in Role)]), roles
    documented = {row.route for row in rows}
    routes = app_routes()
    assert routes - documented == set(), f"routes missing from docs/PERMISSIONS.md: {sorted(routes - documented)}"
    assert documented - routes == set(), f"rows that are no route: {sorted(documented - routes)}"
    assert len({row.key for row in rows}) == len(rows), "a row is listed twice"


# Endpoints authorised by what the request carries (a one-tap link's token, the SMS callbacks' key), whatever
# the caller's role: the same for everyone, the screen included (docs/PERMISSIONS.md, notes).
NOT_BY_ROLE = frozenset(
    {
        "POST /api/v1/one-tap/{token}/ack",
        "POST /api/v1/sms/replies/tencent",
        "POST /api/v1/sms/replies/aliyun",
    }
)


def test_only_the_admin_and_the_screen_differ_as_the_roles_say() -> None:
    """Sanity of the role model itself: the screen acts on nothing, integration reads no ticket."""
    _, rows = read_table()
    for row in rows:
        if row.key in NOT_BY_ROLE:
            assert set(row.cells.values()) == {"allow"}, row.key
            continue
        if row.method in ("POST", "PUT", "DELETE") and row.path not in ("/api/v1/session",):
            assert row.cells["screen"] == "deny", row.key
        if "/tickets" in row.path or row.path.startswith("/api/v1/alarms"):
            assert row.cells["integration"] == "deny", row.key
        assert row.cells["admin"] in ("allow", "deny"), row.key
    assert ROLE_PERMISSIONS[Role.ADMIN] >= ROLE_PERMISSIONS[Role.OPS_CENTER]
