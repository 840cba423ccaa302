"""The platform server's app (FastAPI): ``/api/v1`` JSON (`routes`), ``/openapi.json``,
``/metrics``, ``/health``; every request but health, metrics and login needs a token
(`auth`) once the workspace has one.

Errors are the workspace's own: a `ModelcycleError` answers with its status from
``ERROR_TABLE`` and a JSON body ``{"error", "message", "hint"}``, the same the CLI prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from modelcycle import __version__
from modelcycle.core.errors import ModelcycleError, http_status
from modelcycle.server.auth import TokenAuth
from modelcycle.server.metrics import MonitorCollector
from modelcycle.server.routes import api_router
from modelcycle.server.scheduler import Scheduler
from modelcycle.server.security import SecurityHeaders
from modelcycle.server.ui import ui_router
from modelcycle.server.ui.core import HERE as UI_HERE
from modelcycle.server.ui.core import error_page as pages_error

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
        ws = Workspace.open(root)
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
        if not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
            "accept", ""
        ):
            return pages_error(request, error, status)
        return JSONResponse(error.to_dict(), status_code=status)

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
    app.include_router(ui_router(ws))
    app.mount("/static", StaticFiles(directory=str(UI_STATIC)), name="static")
    app.add_middleware(TokenAuth, tokens=lambda: ws().tokens, allow_open=allow_open)
    app.add_middleware(SecurityHeaders)

    return app
