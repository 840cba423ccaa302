"""The model registry's pages: models, a model's versions with their stage history, a
version (signature, metrics, evaluations and their reports, gate results, lineage), and
the editor's forms to move a version to a stage and to point an alias at it."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from modelcycle.core.errors import NotFoundError
from modelcycle.registry import STAGES
from modelcycle.registry.lineage import model_lineage_lines
from modelcycle.server.ui._ops_charts import MAX_LANES, stage_spans, stage_timeline
from modelcycle.server.ui._ops_lineage import lineage_svg
from modelcycle.server.ui.core import Pages
from modelcycle.server.ui.core import number as parse_number

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace

#: the stages a form may move a version to (retiring is the CLI's `model retire`)
MOVABLE = STAGES[1:4]
#: the report is a stand-alone document with its own inline styles and no scripts
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; form-action 'none'; sandbox"
)
CSS = "/static/models.css"


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/models", response_class=HTMLResponse)
    def models(request: Request) -> HTMLResponse:
        return pages.render(request, "models.html", models=pages.ws().models.models(), css=CSS)

    @router.get("/models/{name}", response_class=HTMLResponse)
    def model(request: Request, name: str) -> HTMLResponse:
        ws = pages.ws()
        versions = ws.models.versions(name)  # NotFoundError names the models
        history = ws.models.history(name)
        aliases = _aliases(ws, name)
        now = dt.datetime.now(dt.UTC)
        spans = stage_spans(
            [(v.version, v.created_at) for v in versions],
            [
                (tr.version, tr.to_stage, tr.at)
                for tr in history
                if tr.kind == "stage" and tr.version is not None and tr.to_stage
            ],
            now,
        )
        return pages.render(
            request,
            "models_model.html",
            css=CSS,
            name=name,
            versions=list(reversed(versions)),
            aliases=aliases,
            by_version=_by_version(aliases),
            history=list(reversed(history)),
            timeline=stage_timeline(spans, now),
            max_lanes=MAX_LANES,
            can_edit=pages.can(request, "editor"),
            stages=MOVABLE,
        )

    @router.get("/models/{name}/{version}", response_class=HTMLResponse)
    def version(request: Request, name: str, version: str) -> Response:
        ws = pages.ws()
        v = ws.models.resolve(f"{name}@{version}")
        if version != str(v.version):  # an alias: show the version's own page
            return RedirectResponse(_version_url(name, v.version), status_code=303)
        info = ws.models.show(v.ref)
        lineage = ws.models.lineage(v.ref)
        gates = [
            e for e in ws.events(kind="model.gate", subject=v.ref, limit=200) if e.subject == v.ref
        ]
        gated = [
            (run, step)
            for run in ws.maintenance.list(deployment=None, limit=200)
            if run.candidate == v.ref
            for step in run.steps
            if step.get("step") == "gated"
        ]
        moves = [tr for tr in ws.models.history(name) if tr.version == v.version]
        return pages.render(
            request,
            "models_version.html",
            css=CSS,
            v=v,
            info=info,
            evaluations=list(reversed(ws.evaluations.list(v.ref))),
            gates=list(reversed(gates)),
            gated=gated,
            moves=list(reversed(moves)),
            lineage=lineage_svg(lineage),
            lineage_text="\n".join(model_lineage_lines(lineage)),
            can_edit=pages.can(request, "editor") and v.stage != "retired",
            stages=[s for s in MOVABLE if s != v.stage],
        )

    @router.get("/models/{name}/{version}/evaluations/{evaluation_id}/report")
    def report(request: Request, name: str, version: str, evaluation_id: str) -> Response:
        ws = pages.ws()
        v = ws.models.resolve(f"{name}@{version}")
        evaluation = ws.evaluations.get(_number(evaluation_id, "evaluation"))
        if evaluation.row.model_version_id != v.id:
            raise NotFoundError(
                f"{v.ref} has no evaluation {evaluation_id}",
                hint=f"its evaluations are listed on {_version_url(name, v.version)}",
            )
        with tempfile.TemporaryDirectory(prefix="modelcycle-report-") as tmp:
            path = ws.evaluations.report(evaluation, Path(tmp) / "report.html")
            html = path.read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"content-security-policy": REPORT_CSP})

    @router.post("/models/{name}/{version}/stage")
    async def move(request: Request, name: str, version: str) -> Response:
        form = await request.form()
        pages.check_form(request, form, "editor")
        number = _number(version, "version")
        stage = str(form.get("stage", ""))
        reason = str(form.get("reason", "")).strip() or None
        ws = pages.ws()
        await run_in_threadpool(
            lambda: ws.models.transition(f"{name}@{number}", stage, reason=reason)
        )
        return RedirectResponse(_version_url(name, number), status_code=303)

    @router.post("/models/{name}/{version}/alias")
    async def alias(request: Request, name: str, version: str) -> Response:
        form = await request.form()
        pages.check_form(request, form, "editor")
        number = _number(version, "version")
        alias = str(form.get("alias", "")).strip()
        reason = str(form.get("reason", "")).strip() or None
        ws = pages.ws()
        await run_in_threadpool(lambda: ws.models.set_alias(name, alias, number, reason=reason))
        return RedirectResponse(_version_url(name, number), status_code=303)


def _aliases(ws: Workspace, name: str) -> dict[str, int]:
    for m in ws.models.models():
        if m["name"] == name:
            aliases: dict[str, int] = m["aliases"]
            return aliases
    return {}


def _by_version(aliases: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, number in sorted(aliases.items()):
        out.setdefault(number, []).append(alias)
    return out


def _version_url(name: str, version: int) -> str:
    return f"/models/{quote(name, safe='')}/{version}"


def _number(text: str, what: str) -> int:
    return parse_number(text, what)
