"""A small real HTTP/1.1 server on 127.0.0.1 (asyncio streams), for testing the channels' requests.

It parses request lines, headers and Content-Length bodies, keeps connections alive, records
every request, and answers with whatever the test's handler returns. Every read is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

READ_TIMEOUT_S = 10.0
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 410: "Gone"}


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def raw_query(self) -> str:
        return urlsplit(self.target).query

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.raw_query, keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def json(cls, doc: Any, status: int = 200, **headers: str) -> Response:
        return cls(
            status, json.dumps(doc, ensure_ascii=False).encode(), {"Content-Type": "application/json", **headers}
        )


Handler = Callable[[Request], Awaitable[Response]]


class LocalHttpServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> LocalHttpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                request = await self._read(reader)
                if request is None:
                    break
                self.requests.append(request)
                response = await self.handler(request)
                if response.delay_s:
                    await asyncio.sleep(response.delay_s)
                self._write(writer, response)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Request | None:
        async with asyncio.timeout(READ_TIMEOUT_S):
            line = await reader.readline()
            if not line:
                return None
            method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                raw = await reader.readline()
                text = raw.decode("latin-1").rstrip("\r\n")
                if not text:
                    break
                name, _, value = text.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
        return Request(method, target, headers, body)

    @staticmethod
    def _write(writer: asyncio.StreamWriter, response: Response) -> None:
        reason = REASONS.get(response.status, "Status")
        head = [f"HTTP/1.1 {response.status} {reason}", f"Content-Length: {len(response.body)}"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
