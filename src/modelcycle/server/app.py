"""The platform server's app (FastAPI): ``/api/v1`` JSON, ``/metrics``, ``/health``.

Errors are the workspace's own: a `ModelcycleError` answers with its status from
``ERROR_TABLE`` and a JSON body ``{"error", "message", "hint"}``, the same the CLI prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from modelcycle import __version__
from modelcycle.core.errors import ModelcycleError, http_status
from modelcycle.server.metrics import MonitorCollector
from modelcycle.server.scheduler import Scheduler


def create_app(root: Path, *, scheduler: Scheduler | None = None) -> FastAPI:
    """The app for the workspace at ``root``; ``scheduler`` runs while the app does."""
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
        openapi_url="/api/v1/openapi.json",
    )

    def ws() -> Workspace:
        workspace: Workspace = state["ws"]
        return workspace

    @app.exception_handler(ModelcycleError)
    async def modelcycle_error(request: Request, error: ModelcycleError) -> JSONResponse:
        return JSONResponse(error.to_dict(), status_code=http_status(error))

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

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(state["registry"]), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/monitors")
    def monitors() -> list[dict[str, Any]]:
        return [m.to_dict() for m in ws().monitors.list()]

    @app.get("/api/v1/monitors/{name}")
    def monitor(name: str, limit: int = 20) -> dict[str, Any]:
        info = ws().monitors.get(name)
        results = ws().monitors.results(name, limit=limit)
        return {**info.to_dict(), "results": [r.to_dict() for r in results]}

    @app.post("/api/v1/monitors/{name}/run")
    def run_monitor(name: str) -> dict[str, Any]:
        return ws().monitors.run(name).to_dict()

    @app.get("/api/v1/alerts")
    def alerts(
        monitor: str | None = None, open: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        found = ws().monitors.alerts(monitor=monitor, open_only=open, limit=limit)
        return [a.to_dict() for a in found]

    @app.post("/api/v1/alerts/{alert_id}/ack")
    def ack(alert_id: int, body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
        note = (body or {}).get("note")
        return (
            ws().monitors.acknowledge(alert_id, note=None if note is None else str(note)).to_dict()
        )

    @app.get("/api/v1/events")
    def events(
        limit: int = 100, kind: str | None = None, subject: str | None = None
    ) -> list[dict[str, Any]]:
        return [e.to_dict() for e in ws().events(limit=limit, kind=kind, subject=subject)]

    return app
