"""The FastAPI application: routers combined, the operations-center screen served at /."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse

from api.deps import ApiContext
from api.routes import router
from whistle import __version__
from whistle.metrics import CONTENT_TYPE, render


def create_app(ctx: ApiContext) -> FastAPI:
    """An app bound to an already-started context (the process that serves it owns the resources)."""
    app = FastAPI(
        title="数字吹哨 Digital Whistle", version=__version__, docs_url="/api/docs", openapi_url="/api/openapi.json"
    )
    app.state.ctx = ctx
    app.include_router(router)
    page = resources.files("api").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(render(ctx.metrics()), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def screen() -> str:
        return page

    return app
