"""The platform server's app (FastAPI): ``/api/v1`` JSON (`routes`), ``/openapi.json``,
``/metrics``, ``/health``; every request but health, metrics and login needs a token
(`auth`) once the workspace has one.

Errors are the workspace's own: a `ModelcycleError` answers with its status from
``ERROR_TABLE`` and a JSON body ``{"error", "message", "hint"}``, the same the CLI prints.
A browser asking for a page (`auth.wants_html`) gets it as the UI's error page instead,
and so it does for a path that names no page (404) or a method it does not take (405).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException

from modelcycle import __version__
from modelcycle.core.errors import ModelcycleError, http_status
from modelcycle.server.auth import TokenAuth, wants_html
from modelcycle.server.blobs_api import blobs_router
from modelcycle.server.limits import BodyLimit
from modelcycle.server.metrics import MonitorCollector
from modelcycle.server.routes import api_router
from modelcycle.server.rpc import rpc_router
from modelcycle.server.scheduler import Scheduler
from modelcycle.server.security import SecurityHeaders
from modelcycle.server.ui import ui_router
from modelcycle.server.ui.core import HERE as UI_HERE
from modelcycle.server.ui.core import error_page as pages_error
from modelcycle.server.ui.core import http_error_page as pages_http_error

UI_STATIC = UI_HERE / "static"


def create_app(
    root: Path, *, scheduler: Scheduler | None = None, allow_open: bool = True
) -> FastAPI:
    """The app for the workspace at ``root``; ``scheduler`` runs while the app does.
    ``allow_open``: serve without tokens while the workspace has none (for a server on
    a loopback address only; `modelcycle server` decides from the address)."""
    from modelcycle.api.workspace import Workspace

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The stores obey each request's project scope (`modelcycle.access.guard`).
        ws = Workspace.open(root, guarded=True)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MonitorCollector(ws.monitors.store))
        state.update(ws=ws, registry=registry)
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            ws.close()

    app = FastAPI(
        title="modelcycle",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
    )

    def ws() -> Workspace:
        workspace: Workspace = state["ws"]
        return workspace

    @app.exception_handler(ModelcycleError)
    async def modelcycle_error(request: Request, error: ModelcycleError) -> Response:
        status = http_status(error)
        if wants_html(request.scope):
            return pages_error(request, error, status)
        return JSONResponse(error.to_dict(), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        # No route for the path (404) or the method (405): a browser gets a page with a
        # way back; API clients keep FastAPI's JSON ({"detail": ...}) that the schema
        # declares. Unsigned browsers never get here: auth sends them to sign in first.
        if wants_html(request.scope):
            return pages_http_error(request, error.status_code, error.detail, error.headers)
        return await http_exception_handler(request, error)

    @app.get("/health")
    def health() -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "version": __version__}
        if scheduler is not None:
            out["scheduler"] = {
                "tick_seconds": scheduler.tick,
                "ticks": scheduler.ticks,
                "errors": scheduler.errors,
            }
        return out

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}
        },
    )
    def metrics() -> Response:
        return Response(generate_latest(state["registry"]), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api_router(ws))
    app.include_router(blobs_router(ws))
    app.include_router(rpc_router(ws))
    app.include_router(ui_router(ws))
    app.mount("/static", StaticFiles(directory=str(UI_STATIC)), name="static")
    app.add_middleware(BodyLimit, limit=lambda: ws().config.server.max_request_bytes)
    app.add_middleware(TokenAuth, tokens=lambda: ws().tokens, allow_open=allow_open)
    app.add_middleware(SecurityHeaders)

    return app
