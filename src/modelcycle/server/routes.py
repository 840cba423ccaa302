"""The JSON API under ``/api/v1``: each handler parses, calls one workspace method and
returns plain data. The role a route needs is declared beside it (reader for reads,
editor for changes, admin for tokens); `modelcycle.server.auth` checks it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field, RootModel

from modelcycle.access.scope import MAX_PATTERNS
from modelcycle.core.errors import ERROR_TABLE
from modelcycle.server.auth import needs

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace

READ = [Depends(needs("reader"))]
EDIT = [Depends(needs("editor"))]
ADMIN = [Depends(needs("admin"))]

# Ids are 64-bit integers in every store; a bigger number is refused as bad input.
MAX_ID = 2**63 - 1
# A token may live at most 100 years (a datetime cannot go past the year 9999).
MAX_TOKEN_SECONDS = 100 * 365.25 * 24 * 3600


class ErrorBody(BaseModel):
    """What every workspace error answers with (`ModelcycleError.to_dict`)."""

    error: str = Field(description="The error's class, e.g. NotFoundError")
    message: str = Field(description="What was wrong")
    hint: str | None = Field(default=None, description="How to fix it, when known")
    details: dict[str, Any] | None = Field(
        default=None, description="Machine-readable specifics, e.g. the role needed"
    )


class HttpProblem(BaseModel):
    """The HTTP layer's own answer, before a handler runs: a body that is not JSON (400),
    a path that names no route (404)."""

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class RequestInvalid(BaseModel):
    """FastAPI's answer to a request that does not match the declared parameters or body."""

    detail: list[FieldProblem]


class BadRequest(RootModel[ErrorBody | HttpProblem]):
    """400: a workspace error, or a body that is not JSON."""


class NotFound(RootModel[ErrorBody | HttpProblem]):
    """404: a workspace error, or a path that names no route."""


class Unprocessable(RootModel[ErrorBody | RequestInvalid]):
    """422: a workspace error, or parameters or a body that do not match the schema."""


# Statuses the HTTP layer answers itself too, with its own body, and what it means by them.
FRAMEWORK: dict[int, tuple[type[BaseModel], str]] = {
    400: (BadRequest, "a body that is not JSON"),
    404: (NotFound, "a path that names no route"),
    422: (Unprocessable, "parameters or a body that do not match the schema"),
}


def _error_responses() -> dict[int | str, dict[str, Any]]:
    """Every status a workspace error maps to (`ERROR_TABLE`), each naming its errors;
    500 is left out: it means a bug or a broken store, never an answer to a request."""
    names: dict[int, list[str]] = {}
    for cls, (_, status) in ERROR_TABLE.items():
        if status != 500:
            names.setdefault(status, []).append(cls.__name__)
    out: dict[int | str, dict[str, Any]] = {}
    for status, classes in sorted(names.items()):
        model: type[BaseModel] = ErrorBody
        description = ", ".join(classes)
        if status in FRAMEWORK:
            model, why = FRAMEWORK[status]
            description += f"; or {why}"
        out[status] = {"model": model, "description": description}
    return out


ERRORS = _error_responses()


class TokenRequest(BaseModel):
    name: str = Field(description="Who or what uses the token, e.g. ci-bot")
    role: str = Field(default="reader", description="reader, editor or admin")
    expires_in_seconds: float | None = Field(default=None, gt=0, le=MAX_TOKEN_SECONDS)
    projects: list[str] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="Glob patterns over names the token is limited to, e.g. fraud-*; "
        "none: not limited",
    )


class AckRequest(BaseModel):
    note: str | None = None


class PromoteRequest(BaseModel):
    to: str = Field(description="staging, production or archived")
    reason: str | None = None


class AliasRequest(BaseModel):
    version: int = Field(ge=1, le=MAX_ID)
    reason: str | None = None


class AliasSet(BaseModel):
    model: str
    alias: str
    version: int


class TokenInfo(BaseModel):
    name: str
    role: str
    prefix: str = Field(description="The token's first characters, to tell tokens apart")
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    projects: list[str] | None = Field(
        default=None, description="The name patterns the token is limited to; null: all"
    )


class NewToken(TokenInfo):
    token: str = Field(description="The secret; shown this once only")


def api_router(ws: Callable[[], Workspace]) -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERRORS)

    # -- datasets ------------------------------------------------------------------------
    @api.get("/datasets", dependencies=READ, tags=["datasets"])
    def datasets() -> list[dict[str, Any]]:
        return ws().datasets.catalog()

    @api.get("/datasets/{name}/versions", dependencies=READ, tags=["datasets"])
    def dataset_versions(name: str) -> list[dict[str, Any]]:
        w = ws()
        return [w.datasets.describe(v, profile=False) for v in w.datasets.versions(name)]

    @api.get("/datasets/{ref}", dependencies=READ, tags=["datasets"])
    def dataset(ref: str, profile: bool = True) -> dict[str, Any]:
        w = ws()
        return w.datasets.describe(w.datasets.resolve(ref), profile=profile)

    @api.get("/datasets/{a}/diff/{b}", dependencies=READ, tags=["datasets"])
    def dataset_diff(a: str, b: str, key: str | None = None) -> dict[str, Any]:
        return ws().datasets.diff(a, b, key=key)

    # -- runs ----------------------------------------------------------------------------
    @api.get("/runs", dependencies=READ, tags=["runs"])
    def runs(
        experiment: str | None = None,
        filter: str | None = None,
        order_by: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        found = ws().runs.search(experiment, filter, order_by, limit)
        return [r.to_dict() for r in found]

    @api.get("/runs/{run_id}", dependencies=READ, tags=["runs"])
    def run(run_id: str) -> dict[str, Any]:
        return ws().runs.get(run_id).to_dict()

    @api.get("/experiments", dependencies=READ, tags=["runs"])
    def experiments() -> list[dict[str, Any]]:
        return ws().runs.experiments()

    # -- models --------------------------------------------------------------------------
    @api.get("/models", dependencies=READ, tags=["models"])
    def models() -> list[dict[str, Any]]:
        return ws().models.models()

    @api.get("/models/{ref}", dependencies=READ, tags=["models"])
    def model(ref: str) -> dict[str, Any]:
        w = ws()
        info = w.models.show(ref)
        info["evaluations"] = [e.to_dict() for e in w.evaluations.list(info["ref"])]
        return info

    @api.post("/models/{ref}/stage", dependencies=EDIT, tags=["models"])
    def promote(ref: str, body: PromoteRequest) -> dict[str, Any]:
        return ws().models.transition(ref, body.to, reason=body.reason)

    @api.put("/models/{name}/aliases/{alias}", dependencies=EDIT, tags=["models"])
    def set_alias(name: str, alias: str, body: AliasRequest) -> AliasSet:
        v = ws().models.set_alias(name, alias, body.version, reason=body.reason)
        return AliasSet(model=name, alias=alias, version=v.version)

    # -- deployments ---------------------------------------------------------------------
    @api.get("/deployments", dependencies=READ, tags=["deployments"])
    def deployments() -> list[dict[str, Any]]:
        return [d.to_dict() for d in ws().deployments.list()]

    @api.get("/deployments/{name}", dependencies=READ, tags=["deployments"])
    def deployment(name: str) -> dict[str, Any]:
        return ws().deployments.status(name).to_dict()

    @api.post("/deployments/{name}/rollback", dependencies=EDIT, tags=["deployments"])
    def rollback(name: str, body: AckRequest | None = None) -> dict[str, Any]:
        reason = body.note if body else None
        return ws().deployments.rollback(name, reason=reason).to_dict()

    # -- monitors, alerts, maintenance ---------------------------------------------------
    @api.get("/monitors", dependencies=READ, tags=["monitoring"])
    def monitors() -> list[dict[str, Any]]:
        return [m.to_dict() for m in ws().monitors.list()]

    @api.get("/monitors/{name}", dependencies=READ, tags=["monitoring"])
    def monitor(name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
        w = ws()
        info = w.monitors.get(name)
        results = w.monitors.results(name, limit=limit)
        return {**info.to_dict(), "results": [r.to_dict() for r in results]}

    @api.post("/monitors/{name}/run", dependencies=EDIT, tags=["monitoring"])
    def run_monitor(name: str) -> dict[str, Any]:
        return ws().monitors.run(name).to_dict()

    @api.get("/alerts", dependencies=READ, tags=["monitoring"])
    def alerts(
        monitor: str | None = None,
        open: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        found = ws().monitors.alerts(monitor=monitor, open_only=open, limit=limit)
        return [a.to_dict() for a in found]

    @api.post("/alerts/{alert_id}/ack", dependencies=EDIT, tags=["monitoring"])
    def ack(
        alert_id: Annotated[int, Path(ge=1, le=MAX_ID)],
        body: Annotated[AckRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        note = body.note if body else None
        return ws().monitors.acknowledge(alert_id, note=note).to_dict()

    @api.get("/maintenance", dependencies=READ, tags=["monitoring"])
    def maintenance_runs(
        deployment: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> list[dict[str, Any]]:
        return [r.to_dict() for r in ws().maintenance.list(deployment=deployment, limit=limit)]

    @api.get("/maintenance/{run_id}", dependencies=READ, tags=["monitoring"])
    def maintenance_run(run_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
        return ws().maintenance.get(run_id).to_dict()

    # -- events and tokens ---------------------------------------------------------------
    @api.get("/events", dependencies=READ, tags=["events"])
    def events(
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        kind: Annotated[
            str | None, Query(description="Only events whose kind starts with this")
        ] = None,
        subject: Annotated[
            str | None, Query(description="Only events whose subject starts with this")
        ] = None,
        actor: Annotated[
            str | None, Query(description="Only events by this actor, e.g. token:alice")
        ] = None,
        since: Annotated[
            dt.datetime | None, Query(description="Only events at or after this time (UTC)")
        ] = None,
        until: Annotated[
            dt.datetime | None, Query(description="Only events before this time (UTC)")
        ] = None,
        offset: Annotated[
            int, Query(ge=0, le=MAX_ID, description="Skip this many of the newest matches")
        ] = 0,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` matching events, oldest first; ``offset`` pages back."""
        found = ws().events(
            limit=limit,
            kind=kind,
            subject=subject,
            actor=actor,
            since=since,
            until=until,
            offset=offset,
        )
        return [e.to_dict() for e in found]

    @api.get("/tokens", dependencies=ADMIN, tags=["tokens"])
    def tokens() -> list[TokenInfo]:
        return [TokenInfo(**t.to_dict()) for t in ws().tokens.list()]

    @api.post("/tokens", dependencies=ADMIN, tags=["tokens"], status_code=201)
    def create_token(body: TokenRequest) -> NewToken:
        row, secret = ws().tokens.create(
            body.name, role=body.role, expires_in=body.expires_in_seconds, projects=body.projects
        )
        return NewToken(**row.to_dict(), token=secret)

    @api.delete("/tokens/{name}", dependencies=ADMIN, tags=["tokens"])
    def revoke_token(name: str) -> TokenInfo:
        return TokenInfo(**ws().tokens.revoke(name).to_dict())

    return api
