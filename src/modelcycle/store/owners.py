"""Which name a record hangs under, looked up by the record's id: what project scoping
(`modelcycle.access.scope`) checks when a call names a record by id only.

Each lookup is one indexed query and answers None when no such record exists (the call
it guards then fails or answers as it would for any missing record).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, select

from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore


def _one(store: MetadataStore, stmt: Select[Any]) -> str | None:
    with store.reading() as conn:
        value = conn.execute(stmt.limit(1)).scalar()
    return None if value is None else str(value)


class Owners:
    """``owner(kind, id)``: the owning name of a record of ``kind`` with ``id``."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        d, v, e, r = t.datasets, t.dataset_versions, t.experiments, t.runs
        m, mv, mo = t.models, t.model_versions, t.monitors
        self._queries: dict[str, Callable[[Any], Select[Any]]] = {
            "dataset": lambda i: select(d.c.name).where(d.c.id == i),
            "dataset_version": lambda i: (
                select(d.c.name).join(v, v.c.dataset_id == d.c.id).where(v.c.id == i)
            ),
            "experiment": lambda i: select(e.c.name).where(e.c.id == i),
            "run": lambda i: (
                select(e.c.name).join(r, r.c.experiment_id == e.c.id).where(r.c.id == i)
            ),
            "model": lambda i: select(m.c.name).where(m.c.id == i),
            "model_version": lambda i: (
                select(m.c.name).join(mv, mv.c.model_id == m.c.id).where(mv.c.id == i)
            ),
            "evaluation": lambda i: (
                select(m.c.name)
                .join(mv, mv.c.model_id == m.c.id)
                .join(t.evaluations, t.evaluations.c.model_version_id == mv.c.id)
                .where(t.evaluations.c.id == i)
            ),
            "deployment": lambda i: select(t.deployments.c.name).where(t.deployments.c.id == i),
            "monitor": lambda i: select(mo.c.deployment).where(mo.c.id == i),
            "monitor_name": lambda name: (
                select(mo.c.deployment)
                .where(mo.c.name == name)
                .order_by(mo.c.deleted_at.is_not(None), mo.c.id.desc())
            ),
            "alert": lambda i: (
                select(mo.c.deployment)
                .join(t.alerts, t.alerts.c.monitor_id == mo.c.id)
                .where(t.alerts.c.id == i)
            ),
            "monitor_result": lambda i: (
                select(mo.c.deployment)
                .join(t.monitor_results, t.monitor_results.c.monitor_id == mo.c.id)
                .where(t.monitor_results.c.id == i)
            ),
            "label_project": lambda i: select(t.label_projects.c.name).where(
                t.label_projects.c.id == i
            ),
            "label_task": lambda i: (
                select(t.label_projects.c.name)
                .join(t.label_tasks, t.label_tasks.c.project_id == t.label_projects.c.id)
                .where(t.label_tasks.c.id == i)
            ),
            "maintenance": lambda i: select(t.maintenance_runs.c.deployment).where(
                t.maintenance_runs.c.id == i
            ),
            "sketch": lambda i: (
                select(d.c.name)
                .join(v, v.c.dataset_id == d.c.id)
                .join(t.dataset_sketches, t.dataset_sketches.c.dataset_version_id == v.c.id)
                .where(t.dataset_sketches.c.id == i)
            ),
            "pipeline_run": lambda i: select(t.pipeline_runs.c.pipeline).where(
                t.pipeline_runs.c.id == i
            ),
        }

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._queries)

    def owner(self, kind: str, key: Any) -> str | None:
        return _one(self.store, self._queries[kind](key))

    def remembering(self) -> Owners:
        """These lookups, each answered once (for the span of one call)."""
        return _Remembering(self)


class _Remembering(Owners):
    def __init__(self, owners: Owners) -> None:
        self.store = owners.store
        self._queries = owners._queries
        self._seen: dict[tuple[str, Any], str | None] = {}

    def owner(self, kind: str, key: Any) -> str | None:
        if (kind, key) not in self._seen:
            self._seen[kind, key] = super().owner(kind, key)
        return self._seen[kind, key]
