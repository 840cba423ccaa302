"""The home page: counts, recent runs, deployments' health, open alerts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from modelcycle.server.ui.core import Pages


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        ws = pages.ws()
        datasets = ws.datasets.catalog()
        models = ws.models.models()
        deployments = ws.deployments.list()
        alerts = ws.monitors.alerts(open_only=True, limit=20)
        runs = ws.runs.search(None, None, None, 10)
        return pages.render(
            request,
            "home.html",
            datasets=datasets,
            models=models,
            deployments=deployments,
            alerts=alerts,
            runs=runs,
            monitors=ws.monitors.list(),
        )
