"""Fixtures for the channel tests: real HTTP servers on 127.0.0.1, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.alerts.channels.http_server import Handler, LocalHttpServer

Serve = Callable[[Handler], Awaitable[LocalHttpServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a local HTTP server around a handler; every server started is stopped at teardown."""
    servers: list[LocalHttpServer] = []

    async def start(handler: Handler) -> LocalHttpServer:
        server = await LocalHttpServer(handler).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
