"""The FastAPI application: routers combined, the operations-center screen served at /."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from api.deps import ApiContext
from api.limits import BodyLimit
from api.routes import router
from whistle import __version__
from whistle.errors import ServiceError
from whistle.metrics import CONTENT_TYPE, render


def status_of(exc: ServiceError) -> int:
    """The HTTP status of a refusal: 404 not found, 403 forbidden, 400 malformed, 422 invalid, otherwise 409."""
    if exc.not_found:
        return status.HTTP_404_NOT_FOUND
    if exc.forbidden:
        return status.HTTP_403_FORBIDDEN
    if exc.malformed:
        return status.HTTP_400_BAD_REQUEST
    if exc.invalid:
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    return status.HTTP_409_CONFLICT


def create_app(ctx: ApiContext) -> FastAPI:
    """An app bound to an already-started context (the process that serves it owns the resources)."""
    app = FastAPI(
        title="数字吹哨 Digital Whistle", version=__version__, docs_url="/api/docs", openapi_url="/api/openapi.json"
    )
    app.state.ctx = ctx
    app.include_router(router)
    app.add_middleware(
        BodyLimit,
        default=ctx.access.max_body_bytes,
        paths={"/api/v1/registry": ctx.access.max_registry_bytes},
    )

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))

    page = resources.files("api").joinpath("static/index.html").read_text(encoding="utf-8")
    # The screen's scripts (ECharts, vendored by scripts/vendor-echarts): nothing is loaded from the internet.
    app.mount("/static", StaticFiles(packages=[("api", "static")]), name="static")

    @app.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(render(ctx.metrics()), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def screen() -> str:
        return page

    # The grid worker's page: an installable web app under /m/ (its manifest, service worker and icons beside it).
    worker_page = resources.files("api").joinpath("static/m/index.html").read_text(encoding="utf-8")

    @app.get("/m/", response_class=HTMLResponse, include_in_schema=False)
    async def worker() -> HTMLResponse:
        return HTMLResponse(worker_page, headers={"Cache-Control": "no-cache"})

    @app.get("/m/a/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def one_tap(token: str) -> HTMLResponse:
        """A one-tap link from a message: the same page, which reads the token from its address."""
        return HTMLResponse(worker_page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    app.mount("/m", WorkerFiles(packages=[("api", "static/m")]), name="worker")
    return app


class WorkerFiles(StaticFiles):
    """The worker page's files: the service worker is always revalidated, the manifest has its media type."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if path.endswith("sw.js"):
            response.headers["Cache-Control"] = "no-cache"
        elif path.endswith(".webmanifest"):
            response.headers["Content-Type"] = "application/manifest+json"
        return response
