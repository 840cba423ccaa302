"""Labeling: the projects with their progress, a project's progress per annotator,
agreement and likely label issues, and the annotation screen.

The annotation screen is a plain HTML form (radio buttons or checkboxes for classes, a
number field, rows of x, y, w, h for boxes); ``static/labeling.js`` adds keyboard
shortcuts and drawing boxes on the image. Viewing needs a reader token; recording a
label needs ``editor``, like every other change. The form names the annotator the label
is recorded for; annotators are a project's own names (``label assign``), not tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from modelcycle.core.errors import InputDataError, ModelcycleError, UsageError, http_status
from modelcycle.server.ui import _label_form as label_form
from modelcycle.server.ui import _label_tasks as tasks
from modelcycle.server.ui.core import Pages

if TYPE_CHECKING:
    from starlette.datastructures import FormData

    from modelcycle.api.workspace import Workspace
    from modelcycle.labeling.service import Project
    from modelcycle.store.labels import TaskRecord

WRITE_ROLE = "editor"
SHORTCUT_KEYS = 9  # classes 1..9 have a key each


def annotate_url(project: str, annotator: str | None = None, **params: str) -> str:
    query = {"annotator": annotator, **params} if annotator else params
    base = f"/labeling/{project}/annotate"
    return f"{base}?{urlencode(query)}" if query else base


def register(router: APIRouter, pages: Pages) -> None:
    @router.get("/labeling", response_class=HTMLResponse)
    def projects(request: Request) -> HTMLResponse:
        ws = pages.ws()
        rows = [{**p, "status": ws.labels.status(p["name"])} for p in ws.labels.projects()]
        return pages.render(request, "labeling.html", projects=rows)

    @router.get("/labeling/{project}", response_class=HTMLResponse)
    def project(request: Request, project: str) -> HTMLResponse:
        ws = pages.ws()
        p = ws.labels.get(project)
        return pages.render(
            request,
            "labeling_project.html",
            project=p,
            status=ws.labels.status(project),
            agreement=ws.labels.agreement(project),
            issues_apply=_issues_apply(p.schema.kind, p.schema.multi_label, p.dataset.kind),
            annotate_url=annotate_url,
        )

    @router.get("/labeling/{project}/issues", response_class=HTMLResponse)
    def issues(request: Request, project: str, exclude: str = "") -> HTMLResponse:
        ws = pages.ws()
        p = ws.labels.get(project)
        columns = [c.strip() for c in exclude.split(",") if c.strip()]
        found: list[dict[str, Any]] = []
        problem = None
        try:
            found = ws.labels.issues(project, exclude=columns)
        except UsageError as e:  # too few labels, or a kind that has none: said on the page
            problem = e
        return pages.render(
            request,
            "labeling_issues.html",
            project=p,
            issues=found,
            problem=problem,
            exclude=", ".join(columns),
            columns=[c["name"] for c in p.dataset.schema or []],
            annotate_url=annotate_url,
        )

    @router.get("/labeling/{project}/tasks/{key:path}/image")
    def task_image(request: Request, project: str, key: str) -> Response:
        data, media_type, oid = tasks.image(pages.ws(), project, key)
        etag = f'"{oid}"'
        # A task's image is a content-addressed blob: it never changes under its name.
        headers = {"ETag": etag, "Cache-Control": "private, max-age=86400, immutable"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=media_type, headers=headers)

    @router.get("/labeling/{project}/annotate", response_class=HTMLResponse)
    def annotate_page(
        request: Request,
        project: str,
        annotator: str = "",
        task: str | None = None,
        after: str | None = None,
    ) -> HTMLResponse:
        ws = pages.ws()
        if not annotator:
            p = ws.labels.get(project)
            names = ws.labels.labels.annotators(p.record.id)
            token = request.state.token
            if token is not None and token.name in names:
                return _screen(request, pages, ws, project, token.name, task, after)
            return pages.render(
                request, "labeling_annotators.html", project=p, annotators=names, task=task
            )
        return _screen(request, pages, ws, project, annotator, task, after)

    @router.post("/labeling/{project}/annotate")
    async def annotate(request: Request, project: str) -> Response:
        form = await request.form()
        pages.check_form(request, form, WRITE_ROLE)
        return await run_in_threadpool(_record, request, pages, project, form)


def _record(request: Request, pages: Pages, project: str, form: FormData) -> Response:
    ws = pages.ws()
    annotator = str(form.get("annotator", ""))
    key = str(form.get("task", ""))
    p = ws.labels.get(project)
    task = tasks.task(ws, p, key)
    schema = p.schema
    where = f"task {key!r}"
    try:
        value = label_form.value(schema, form, where)
        prediction = _prediction(ws, p, task, str(form.get("prediction", "")))
        ws.labels.annotate(project, key, annotator, value, prediction_id=prediction)
    except (InputDataError, UsageError) as e:
        # Show the form again with what was typed and why it was refused.
        return _screen(
            request,
            pages,
            ws,
            project,
            annotator,
            key,
            None,
            error=e,
            filled=label_form.from_form(schema, form),
            status_code=http_status(e),
        )
    return RedirectResponse(annotate_url(project, annotator, after=key), status_code=303)


def _prediction(ws: Workspace, project: Project, task: TaskRecord, sent: str) -> int | None:
    """The suggestion the form was pre-filled from; it must be one of this task's."""
    if not sent:
        return None
    for p in tasks.suggestions(ws, project, task):
        if str(p.id) == sent:
            return p.id
    raise UsageError(
        f"prediction {sent!r} is not a suggestion for task {task.key!r}",
        hint="reload the task and label it again",
    )


def _screen(
    request: Request,
    pages: Pages,
    ws: Workspace,
    project: str,
    annotator: str,
    key: str | None,
    after: str | None,
    *,
    error: ModelcycleError | None = None,
    filled: label_form.Filled | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    queue = tasks.queue(ws, project, annotator)
    p = queue.project
    after_task = tasks.task(ws, p, after) if after is not None else None
    current = tasks.task(ws, p, key) if key is not None else queue.next_open(after_task)
    context: dict[str, Any] = {
        "project": p,
        "schema": p.schema,
        "queue": queue,
        "annotator": annotator,
        "can_write": pages.can(request, WRITE_ROLE),
        "annotate_url": annotate_url,
        "shortcut_keys": SHORTCUT_KEYS,
    }
    if current is None:
        first = queue.tasks[0].key if queue.tasks else None
        return pages.render(request, "labeling_annotate.html", task=None, first=first, **context)
    view = tasks.view(ws, p, current)
    own = queue.labels.get(current.id)
    from_suggestion = own is None and view.suggestion is not None
    if filled is None:
        start = own if own is not None else (view.suggestion.value if view.suggestion else None)
        filled = label_form.from_value(p.schema, start)
    if p.schema.kind in label_form.ROW_FIELDS:
        blank = {k: "" for k in ("label", *label_form.ROW_FIELDS[p.schema.kind])}
        filled.rows = [*filled.rows, *([blank] * label_form.BLANK_ROWS)]
    before, next_ = queue.neighbours(current)
    at = queue.position(current)
    suggested: set[str] = set()
    if p.schema.kind == "classification" and view.suggestion is not None:
        shown = view.suggestion.value
        suggested = {str(v) for v in shown} if isinstance(shown, list) else {str(shown)}
    return pages.render(
        request,
        "labeling_annotate.html",
        status_code=status_code,
        task=view,
        filled=filled,
        own=own,
        from_suggestion=from_suggestion,
        prediction=view.suggestion.id if from_suggestion and view.suggestion else None,
        position=None if at is None else at + 1,
        suggested=suggested,
        image_url=f"/labeling/{p.name}/tasks/{quote(current.key, safe='')}/image",
        prev=before.key if before else None,
        next=next_.key if next_ else None,
        error=error,
        **context,
    )


def _issues_apply(kind: str, multi_label: bool, dataset_kind: str) -> bool:
    return kind == "classification" and not multi_label and dataset_kind == "table"
