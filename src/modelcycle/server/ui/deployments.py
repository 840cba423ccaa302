"""Deployment pages: the list, and one deployment's routes and shadows with the versions
they resolve to, its history, its live traffic over the last hour, the canary of a
running maintenance run, and the editor's "Roll back" form."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from modelcycle.server.ui._ops_traffic import BUCKET_SECONDS, traffic
from modelcycle.server.ui.core import Pages

CSS = "/static/ops.css"
#: the live charts cover this many minutes up to now
WINDOW_MINUTES = 60


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/deployments", response_class=HTMLResponse)
    def deployments(request: Request) -> HTMLResponse:
        ws = pages.ws()
        running = {r.deployment: r for r in ws.maintenance.list(limit=200) if r.running}
        return pages.render(
            request,
            "deployments.html",
            css=CSS,
            deployments=ws.deployments.list(),
            running=running,
        )

    @router.get("/deployments/{name}", response_class=HTMLResponse)
    def deployment(request: Request, name: str) -> HTMLResponse:
        ws = pages.ws()
        status = ws.deployments.status(name)  # NotFoundError names the deployments
        end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        start = end - dt.timedelta(seconds=BUCKET_SECONDS * WINDOW_MINUTES)
        logged = ws.deployments.predictions(
            name, start, end, columns=("request_id", "row", "version", "route", "latency_ms")
        )
        live = traffic(logged, start, end)
        runs = ws.maintenance.list(deployment=name, limit=20)
        monitors = [m for m in ws.monitors.list() if m.row.deployment == name]
        return pages.render(
            request,
            "deployments_detail.html",
            css=CSS,
            d=status,
            history=list(reversed(status.history)),
            live=live,
            requests_chart=live.requests_chart(),
            latency_chart=live.latency_chart(),
            canaries=[r for r in runs if r.running],
            runs=runs,
            monitors=monitors,
            can_edit=pages.can(request, "editor"),
        )

    @router.post("/deployments/{name}/rollback")
    async def rollback(request: Request, name: str) -> Response:
        form = await request.form()
        pages.check_form(request, form, "editor")
        reason = str(form.get("reason", "")).strip() or "rolled back in the web UI"
        ws = pages.ws()
        await run_in_threadpool(lambda: ws.deployments.rollback(name, reason=reason))
        return RedirectResponse(f"/deployments/{quote(name, safe='')}", status_code=303)
