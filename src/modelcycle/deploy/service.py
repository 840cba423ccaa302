"""Deployments: a served name routed to versions of one model.

A deployment ``NAME`` serves one endpoint, also called ``NAME``. Its routes are weighted
refs to versions of the model it was created for (``churn@7=90 churn@8=10`` for a canary,
``churn@champion`` to follow an alias), and its shadows are refs that get a copy of the
traffic without answering it. One model per deployment keeps what it serves, what it
logs and what monitoring compares comparable; to try another model, register it as a
version of that model or create a second deployment.

Refs are kept as written and resolved when a route table is built, so a server that polls
`DeploymentService.route_table` picks up an alias move without the deployment changing
(the table's ``revision`` changes). Every change is one transaction that writes the new
state, a history row with the state before and after, and an event; a change that
changes nothing records nothing, so scripts may repeat a command safely.
"""

from __future__ import annotations

import builtins
import datetime as dt
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ConflictError, NotFoundError, UsageError
from modelcycle.core.text import suggest
from modelcycle.data.refs import check_name, parse_ref
from modelcycle.deploy.feedback import FeedbackService
from modelcycle.deploy.routes import Endpoint, Route, RouteTable, Target
from modelcycle.store.deployments import (
    EVENT_KINDS,
    DeploymentChange,
    DeploymentRow,
    DeploymentState,
    DeploymentStore,
)

if TYPE_CHECKING:
    import polars as pl

    from modelcycle.blobs import BlobStore
    from modelcycle.deploy.kubernetes import KubernetesExport
    from modelcycle.deploy.predlog import PredictionLogger
    from modelcycle.registry import RegistryService
    from modelcycle.store.registry import ModelVersionRow

# An HTTP header name (RFC 9110 token).
_HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,200}")
# A change is retried when another writer changed the deployment first: each retry means
# another change went through, so writers racing N others need at most N + 1 attempts.
_ATTEMPTS = 50


@dataclass(frozen=True)
class RouteStatus:
    """A route or shadow as configured and what it resolves to now (None if it does not)."""

    ref: str
    weight: float | None  # None for a shadow
    share: float | None  # weight / sum of weights
    version: int | None
    manifest_oid: str | None
    stage: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "weight": self.weight,
            "share": self.share,
            "version": self.version,
            "manifest_oid": self.manifest_oid,
            "stage": self.stage,
        }


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    model: str
    sticky_header: str | None
    routes: list[RouteStatus]
    shadows: list[RouteStatus]
    revision: str | None  # the route table's revision; None while a ref does not resolve
    generation: int  # how many changes the deployment has had
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    problems: list[str] = field(default_factory=list)
    history: list[DeploymentChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "sticky_header": self.sticky_header,
            "routes": [r.to_dict() for r in self.routes],
            "shadows": [s.to_dict() for s in self.shadows],
            "revision": self.revision,
            "generation": self.generation,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "updated_at": self.updated_at.isoformat(),
            "problems": self.problems,
            "history": [h.to_dict() for h in self.history],
        }


class DeploymentService:
    """Create, route, shadow, roll back and delete deployments; read their prediction
    logs (`predictions`) and feedback (`feedback`); export Kubernetes manifests."""

    def __init__(
        self,
        store: DeploymentStore,
        registry: RegistryService,
        blobs: BlobStore,
        *,
        notify: Callable[[str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.blobs = blobs
        # Told of every change after it commits (webhooks); never raises.
        self._notify = notify or (lambda kind, subject, payload: None)
        self.feedback = FeedbackService(store, self.predictions)

    # -- changing ----------------------------------------------------------------------
    def create(
        self,
        name: str,
        model_ref: str,
        *,
        sticky_header: str | None = None,
        reason: str | None = None,
    ) -> DeploymentStatus:
        """A deployment that sends all traffic to ``model_ref`` (``churn@champion`` follows
        the alias). With ``sticky_header``, requests with the same value of that header
        always take the same route while the weights hold."""
        check_name(name, "deployment name")
        header = _check_header(sticky_header)
        ref = _normalize(model_ref)
        version = self._check_live(ref)
        state = DeploymentState(((ref, 100.0),), (), header)
        self.store.create(name, version.model_id, state, reason)
        self._notify(EVENT_KINDS["created"], name, {"after": state.to_dict(), "reason": reason})
        return self.status(name)

    def route(
        self, name: str, weights: Mapping[str, float], *, reason: str | None = None
    ) -> DeploymentStatus:
        """Replace the routes: ``{"churn@7": 90, "churn@8": 10}``. Weights are positive and
        need not add up to 100; every ref must exist and not be retired."""
        if not weights:
            raise UsageError(
                "no routes given", hint="give at least one REF=WEIGHT, e.g. churn@7=100"
            )
        routes: dict[str, float] = {}
        for raw, weight in weights.items():
            ref = _normalize(raw)
            if ref in routes:
                raise UsageError(f"{raw} is given twice (as {ref})", hint="name each ref once")
            routes[ref] = _check_weight(raw, weight)

        def compute(current: DeploymentRow) -> DeploymentState:
            for ref in routes:
                self._check_ref(current, ref)
            return replace(current.state, routes=tuple(routes.items()))

        return self._apply(name, "route", compute, reason)

    def shadow(
        self, name: str, refs: Sequence[str], *, reason: str | None = None
    ) -> DeploymentStatus:
        """Add shadows: versions that get a copy of every request; their answers are
        logged (route ``shadow``) and never returned."""
        if not refs:
            raise UsageError("no shadow refs given", hint="e.g. churn@9")
        wanted = list(dict.fromkeys(_normalize(r) for r in refs))

        def compute(current: DeploymentRow) -> DeploymentState:
            routed = {ref for ref, _ in current.state.routes}
            for ref in wanted:
                self._check_ref(current, ref)
                if ref in routed:
                    raise UsageError(
                        f"{ref} already takes traffic in deployment {name!r}",
                        hint="a shadow is a version that gets copies of requests; "
                        "route it out first to shadow it",
                    )
            added = tuple(r for r in wanted if r not in current.state.shadows)
            return replace(current.state, shadows=current.state.shadows + added)

        return self._apply(name, "shadow", compute, reason)

    def remove_shadow(
        self, name: str, refs: Sequence[str] | None = None, *, reason: str | None = None
    ) -> DeploymentStatus:
        """Remove the given shadows (all of them when ``refs`` is None)."""
        unwanted = None if refs is None else {_normalize(r) for r in refs}

        def compute(current: DeploymentRow) -> DeploymentState:
            shadows = current.state.shadows
            if unwanted is not None:
                missing = sorted(unwanted - set(shadows))
                if missing:
                    raise NotFoundError(
                        f"deployment {name!r} has no shadow {', '.join(missing)}",
                        hint=f"its shadows: {', '.join(shadows) or 'none'}",
                    )
            keep = () if unwanted is None else tuple(s for s in shadows if s not in unwanted)
            return replace(current.state, shadows=keep)

        return self._apply(name, "shadow", compute, reason)

    def rollback(self, name: str, *, reason: str | None = None) -> DeploymentStatus:
        """Restore the routes as they were before their latest change (shadows stay as
        they are). Rolling back twice returns to where you started, as `model rollback`."""

        def compute(current: DeploymentRow) -> DeploymentState:
            previous = _previous_routes(self.store.changes(current.id))
            if previous is None:
                raise ConflictError(
                    f"deployment {name!r} has no earlier routes to roll back to",
                    hint="its routes have not changed since it was created",
                )
            for ref, _ in previous:
                try:
                    self._check_ref(current, ref)
                except (NotFoundError, ConflictError) as e:
                    raise ConflictError(
                        f"cannot roll {name!r} back: {e.message}",
                        hint="set the routes you want with `modelcycle deploy route`",
                    ) from e
            return replace(current.state, routes=previous)

        return self._apply(name, "rollback", compute, reason or "rollback")

    def delete(self, name: str, *, reason: str | None = None) -> None:
        """Delete a deployment: it routes nothing any more; its history and prediction
        logs stay, and `create` may use the name again."""
        self._apply(name, "deleted", lambda current: current.state, reason, delete=True)

    def _apply(
        self,
        name: str,
        kind: str,
        compute: Callable[[DeploymentRow], DeploymentState],
        reason: str | None,
        *,
        delete: bool = False,
    ) -> DeploymentStatus:
        # Validation reads the registry outside the write transaction; the store applies
        # the result only if nobody changed the deployment meanwhile, else we recompute.
        for attempt in range(_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))  # spread the herd
            current = self._get(name)
            state = compute(current)
            if state == current.state and not delete:
                return self.status(name)
            row = self.store.change(
                name,
                kind,
                state,
                expect_generation=current.generation,
                reason=reason,
                delete=delete,
            )
            if row is not None:
                self._notify(
                    EVENT_KINDS[kind],
                    name,
                    {
                        "generation": row.generation,
                        "before": current.state.to_dict(),
                        "after": state.to_dict(),
                        "reason": reason,
                    },
                )
                return self._status(row, history=not delete)
        raise ConflictError(
            f"deployment {name!r} kept changing while this change was computed",
            hint="run the command again",
        )

    # -- reading -----------------------------------------------------------------------
    def _get(self, name: str) -> DeploymentRow:
        row = self.store.get(name)
        if row is None:
            raise NotFoundError(
                f"no deployment named {name!r}{suggest(name, self.store.names())}",
                hint="`modelcycle deploy list` shows the deployments; "
                "`modelcycle deploy create NAME --model REF` makes one",
            )
        return row

    def status(self, name: str) -> DeploymentStatus:
        """Routes with the versions they resolve to now, shadows, the route table's
        revision, and the history of changes."""
        return self._status(self._get(name), history=True)

    def list(self) -> list[DeploymentStatus]:
        """Every deployment (without history), by name."""
        return [self._status(row) for row in self.store.live()]

    def history(self, name: str) -> builtins.list[DeploymentChange]:
        """Every change of the deployment (of any earlier one of that name too), oldest
        first: who changed what, when, and why."""
        row = self.store.get(name, include_deleted=True) or self._get(name)  # or raise
        return self.store.changes(row.id)

    def _status(self, row: DeploymentRow, *, history: bool = False) -> DeploymentStatus:
        problems: list[str] = []
        total = sum(w for _, w in row.state.routes)

        def resolve(ref: str, weight: float | None) -> RouteStatus:
            share = weight / total if weight is not None else None
            try:
                v = self.registry.resolve(ref)
            except NotFoundError as e:
                problems.append(f"{ref}: {e.message}")
                return RouteStatus(ref, weight, share, None, None, None)
            if v.stage == "retired":
                problems.append(f"{ref}: {v.ref} is retired")
            return RouteStatus(ref, weight, share, v.version, v.manifest_oid, v.stage)

        routes = [resolve(ref, w) for ref, w in row.state.routes]
        shadows = [resolve(ref, None) for ref in row.state.shadows]
        revision = None
        if not problems and row.deleted_at is None:
            revision = self._table(row, routes, shadows).revision
        return DeploymentStatus(
            name=row.name,
            model=row.model,
            sticky_header=row.state.sticky_header,
            routes=routes,
            shadows=shadows,
            revision=revision,
            generation=row.generation,
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
            problems=problems,
            history=self.store.changes(row.id) if history else [],
        )

    @staticmethod
    def _table(
        row: DeploymentRow, routes: Sequence[RouteStatus], shadows: Sequence[RouteStatus]
    ) -> RouteTable:
        def target(r: RouteStatus) -> Target:
            assert r.version is not None and r.manifest_oid is not None
            return Target(r.ref, row.model, r.version, r.manifest_oid)

        endpoint = Endpoint(
            row.name,
            tuple(Route(target(r), float(r.weight or 0)) for r in routes),
            tuple(target(s) for s in shadows),
            row.state.sticky_header,
        )
        return RouteTable({row.name: endpoint}, deployment=row.name)

    def route_table(self, name: str) -> RouteTable:
        """What a server serves for this deployment, with aliases resolved now: one
        endpoint called ``name``. Raises ConflictError when a ref no longer resolves to a
        live version (the server keeps its current table)."""
        row = self._get(name)
        status = self._status(row)
        if status.problems:
            raise ConflictError(
                f"deployment {name!r} routes to what cannot be served: "
                + "; ".join(status.problems),
                hint=f"fix its routes with `modelcycle deploy route {name} REF=WEIGHT …`",
            )
        return self._table(row, status.routes, status.shadows)

    # -- retirement guard ---------------------------------------------------------------
    def routed_versions(self) -> set[tuple[str, int]]:
        """(model, version) of every version a deployment sends traffic or shadow copies
        to now (aliases resolved)."""
        out: set[tuple[str, int]] = set()
        for row in self.store.live():
            for _, version, _ in self._traffic(row):
                out.add((row.model, version))
        return out

    def check_not_routed(self, version: ModelVersionRow) -> None:
        """Raise ConflictError naming the deployments that route traffic (or shadow
        copies) to ``version``; for the registry to call before it retires a version."""
        users: list[str] = []
        names: set[str] = set()
        for row in self.store.live():
            if row.model_id != version.model_id:
                continue
            for _, number, how in self._traffic(row):
                if number == version.version:
                    users.append(f"{row.name} ({how})")
                    names.add(row.name)
        if users:
            raise ConflictError(
                f"{version.ref} receives traffic from deployment {', '.join(users)}",
                hint="route it out first (`modelcycle deploy route NAME REF=WEIGHT …`, "
                "`modelcycle deploy shadow NAME REF --remove` or `modelcycle deploy delete`)",
                deployments=sorted(names),
            )

    def _traffic(self, row: DeploymentRow) -> Iterable[tuple[str, int, str]]:
        """(ref, resolved version, how) of each route and shadow that resolves."""
        total = sum(w for _, w in row.state.routes)
        entries = [(ref, f"{ref}, {w / total:.0%}") for ref, w in row.state.routes]
        entries += [(ref, f"shadow {ref}") for ref in row.state.shadows]
        for ref, how in entries:
            try:
                v = self.registry.resolve(ref)
            except NotFoundError:
                continue
            yield ref, v.version, how

    # -- prediction logs ---------------------------------------------------------------
    def logger(
        self,
        deployment: str | None = None,
        *,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        sample_rate: float = 1.0,
    ) -> PredictionLogger:
        """A `PredictionLogger` writing into this workspace (for a model server)."""
        from modelcycle.deploy.predlog import PredictionLogger

        return PredictionLogger(
            self.blobs,
            self.store,
            deployment=deployment,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
            sample_rate=sample_rate,
        )

    def predictions(
        self,
        target: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        limit: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Logged predictions with ``since <= ts <= until``, oldest first, as a polars
        DataFrame (``.to_pandas()`` for pandas). ``target`` is a deployment name, a model
        ref (``churn@7``, ``churn@champion`` resolved now), or a model name (all its
        versions); a name that is both a deployment and a model means the deployment.
        Naive times are UTC. ``limit`` keeps the newest rows; ``columns`` reads only
        those columns (and ``ts``)."""
        from modelcycle.deploy.segments import read_predictions

        deployment, model, version = self._log_scope(target)
        return read_predictions(
            self.blobs,
            self.store,
            deployment=deployment,
            model=model,
            version=version,
            since=since,
            until=until,
            limit=limit,
            columns=columns,
        )

    def _log_scope(self, target: str) -> tuple[str | None, str | None, int | None]:
        # Logs may come from a server that serves a package folder under a name that is
        # neither a deployment nor a registered model: their segments name them too.
        if "@" in target:
            ref = parse_ref(target)
            try:
                v = self.registry.resolve(target)
            except NotFoundError:
                if ref.number is None or not self.store.has_segments(
                    model=ref.name, version=ref.number
                ):
                    raise
                return None, ref.name, ref.number
            return None, v.model, v.version
        if self.store.get(target, include_deleted=True) or self.store.has_segments(
            deployment=target
        ):
            return target, None, None
        if self.registry.store.model_id(target) is not None or self.store.has_segments(
            model=target
        ):
            return None, target, None
        known = self.store.names() + [m["name"] for m in self.registry.store.models()]
        raise NotFoundError(
            f"no deployment or model named {target!r}{suggest(target, known)}",
            hint="give a deployment name, a model name or a model ref such as churn@7",
        )

    # -- export ------------------------------------------------------------------------
    def export_kubernetes(
        self,
        name: str,
        dest: str | os.PathLike[str],
        *,
        image: str | None = None,
        replicas: int = 2,
        max_replicas: int = 10,
        cpu_utilization: int = 70,
    ) -> KubernetesExport:
        """Write an image build context (the primary route's package and a Dockerfile)
        and Deployment, Service and HorizontalPodAutoscaler manifests to ``dest``."""
        from modelcycle.deploy.kubernetes import export

        table = self.route_table(name)
        return export(
            table.endpoints[name],
            self.registry,
            Path(dest).expanduser(),
            image=image,
            replicas=replicas,
            max_replicas=max_replicas,
            cpu_utilization=cpu_utilization,
        )

    # -- validation --------------------------------------------------------------------
    def _check_live(self, ref: str) -> ModelVersionRow:
        v = self.registry.resolve(ref)
        if v.stage == "retired":
            raise ConflictError(
                f"{ref} is {v.ref}, which is retired" if ref != v.ref else f"{ref} is retired",
                hint="route to a version that is not retired",
            )
        return v

    def _check_ref(self, current: DeploymentRow, ref: str) -> None:
        model = parse_ref(ref).name
        if model != current.model:
            raise UsageError(
                f"{ref} is not a version of {current.model!r}, the model deployment "
                f"{current.name!r} serves",
                hint=f"a deployment routes to versions of one model: register it as a version "
                f"of {current.model!r}, or create another deployment for {model!r}",
            )
        self._check_live(ref)


def _normalize(ref: str) -> str:
    r = parse_ref(ref)
    return f"{r.name}@{r.selector or 'latest'}"


def _check_weight(ref: str, weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise UsageError(f"the weight of {ref} is {weight!r}, not a number", hint="e.g. churn@8=10")
    if not math.isfinite(weight) or weight <= 0:
        raise UsageError(
            f"the weight of {ref} is {weight}; weights must be positive numbers",
            hint="leave a ref out to send it no traffic",
        )
    return float(weight)


def _check_header(header: str | None) -> str | None:
    if header is None:
        return None
    if not _HEADER_RE.fullmatch(header):
        raise UsageError(
            f"{header!r} is not an HTTP header name", hint="e.g. x-user-id (letters, digits, '-')"
        )
    return header.lower()  # header names are case-insensitive; servers see them lowercased


def _previous_routes(changes: Sequence[DeploymentChange]) -> tuple[tuple[str, float], ...] | None:
    """The routes before the latest change that altered them, since the deployment was
    last created."""
    for change in reversed(changes):
        if change.kind == "created":
            return None
        if change.before is not None and change.before.routes != change.after.routes:
            return change.before.routes
    return None


__all__ = ["DeploymentService", "DeploymentStatus", "RouteStatus"]
