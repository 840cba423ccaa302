"""Monitoring pages: monitors with their last status and open alerts; one monitor's
drift, performance and operations over time, its newest per-column drift and its alerts
(acknowledged by an editor); every alert; and the maintenance runs an alert may start,
with each step, decision and reason."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from modelcycle.server.ui._ops_results import MonitorCharts
from modelcycle.server.ui.core import Pages
from modelcycle.server.ui.core import number as parse_number

if TYPE_CHECKING:
    from modelcycle.store.monitors import AlertRow

CSS = "/static/ops.css"
#: the figures the results table shows first (each row folds out all of them)
HEADLINE = (
    "drift_share",
    "prediction_drift",
    "accuracy",
    "estimated_accuracy",
    "rmse",
    "requests",
    "p95_latency_seconds",
    "error_rate",
)


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/monitors", response_class=HTMLResponse)
    def monitors(request: Request) -> HTMLResponse:
        return pages.render(request, "monitors.html", css=CSS, monitors=pages.ws().monitors.list())

    @router.get("/monitors/{name}", response_class=HTMLResponse)
    def monitor(
        request: Request, name: str, limit: int = Query(100, ge=2, le=1000)
    ) -> HTMLResponse:
        ws = pages.ws()
        info = ws.monitors.get(name)  # NotFoundError names the monitors
        results = ws.monitors.results(name, limit=limit)
        newest = results[0] if results else None
        detail = ws.monitors.detail(newest) if newest is not None else {}
        charts = MonitorCharts.of(list(reversed(results)), detail)
        runs = [
            r
            for r in ws.maintenance.list(deployment=info.row.deployment, limit=50)
            if r.trigger.get("monitor") == name
        ]
        return pages.render(
            request,
            "monitors_detail.html",
            css=CSS,
            m=info,
            results=results[:20],
            newest=newest,
            drift=detail.get("drift"),
            prediction_drift=detail.get("prediction_drift"),
            charts=charts,
            headline=HEADLINE,
            alerts=_open_first(ws.monitors.alerts(monitor=name, limit=50)),
            runs=runs,
            can_edit=pages.can(request, "editor"),
            here=f"/monitors/{quote(name, safe='')}",
        )

    @router.get("/alerts", response_class=HTMLResponse)
    def alerts(request: Request, limit: int = Query(200, ge=1, le=1000)) -> HTMLResponse:
        found = _open_first(pages.ws().monitors.alerts(limit=limit))
        return pages.render(
            request,
            "monitors_alerts.html",
            css=CSS,
            alerts=found,
            open=sum(1 for a in found if a.resolved_at is None),
            can_edit=pages.can(request, "editor"),
            here="/alerts",
        )

    @router.post("/alerts/{alert_id}/ack")
    async def acknowledge(request: Request, alert_id: str) -> Response:
        form = await request.form()
        pages.check_form(request, form, "editor")
        number = _number(alert_id, "alert")
        note = str(form.get("note", "")).strip() or None
        ws = pages.ws()
        alert = await run_in_threadpool(lambda: ws.monitors.acknowledge(number, note=note))
        target = str(form.get("next", ""))
        if not _local(target):
            target = f"/monitors/{quote(alert.monitor, safe='')}"
        return RedirectResponse(target, status_code=303)

    @router.get("/maintenance", response_class=HTMLResponse)
    def maintenance(request: Request) -> HTMLResponse:
        return pages.render(
            request, "monitors_maintenance.html", css=CSS, runs=pages.ws().maintenance.list()
        )

    @router.get("/maintenance/{run_id}", response_class=HTMLResponse)
    def maintenance_run(request: Request, run_id: str) -> HTMLResponse:
        run = pages.ws().maintenance.get(_number(run_id, "maintenance run"))
        return pages.render(request, "monitors_maintenance_run.html", css=CSS, run=run)


def _open_first(alerts: list[AlertRow]) -> list[AlertRow]:
    """Open alerts, then resolved ones, each newest first (as they come)."""
    return sorted(alerts, key=lambda a: a.resolved_at is not None)


def _number(text: str, what: str) -> int:
    return parse_number(text, what)


def _local(target: str) -> bool:
    """A path on this server (never another site: ``//host`` or ``/\\host``)."""
    return target.startswith("/") and not target.startswith(("//", "/\\"))
