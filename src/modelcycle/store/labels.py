"""Records of labeling projects: tasks, annotators, assignments, predictions, annotations.

Annotations are never overwritten: an edit inserts a new row and stamps the old one's
``replaced_at``, so a task's history stays readable. Each public method that writes is
one transaction; an import (predictions and annotations together) is one too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.core.errors import ConflictError
from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow

CHUNK = 900  # ids per IN (...) clause: under SQLite's default variable limit


@dataclass(frozen=True)
class ProjectRecord:
    id: int
    name: str
    dataset_version_id: int
    schema: dict[str, Any]
    overlap: int
    num_tasks: int
    created_at: dt.datetime
    created_by: str


@dataclass(frozen=True)
class TaskRecord:
    id: int
    key: str
    position: int
    meta: dict[str, Any] | None


@dataclass(frozen=True)
class PredictionRecord:
    id: int
    task_id: int
    model: str
    value: Any
    score: float | None
    meta: dict[str, Any] | None
    created_at: dt.datetime


@dataclass(frozen=True)
class AnnotationRecord:
    id: int
    task_id: int
    annotator: str
    value: Any
    prediction_id: int | None
    meta: dict[str, Any] | None
    created_at: dt.datetime
    replaced_at: dt.datetime | None


@dataclass
class NewPrediction:
    task: int | str  # a task id, or a task key (resolved in the same transaction)
    model: str
    value: Any
    score: float | None = None
    meta: dict[str, Any] | None = None


@dataclass
class NewAnnotation:
    task: int | str  # a task id, or a task key
    annotator: str
    value: Any
    prediction_id: int | None = None
    prediction_index: int | None = None  # into the same call's predictions, for imports
    meta: dict[str, Any] | None = None
    created_at: dt.datetime | None = None


@dataclass
class LabelChanges:
    """What one transaction adds to a project."""

    annotators: list[str] = field(default_factory=list)
    assignments: list[tuple[int | str, str]] = field(default_factory=list)  # (task, annotator)
    predictions: list[NewPrediction] = field(default_factory=list)
    annotations: list[NewAnnotation] = field(default_factory=list)


class LabelStore:
    """Labeling records in the workspace's metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- projects ----------------------------------------------------------------------
    def create_project(
        self,
        name: str,
        version_id: int,
        schema: dict[str, Any],
        overlap: int,
        tasks: Sequence[tuple[str, int, dict[str, Any] | None]],
        changes: LabelChanges | None = None,
    ) -> tuple[ProjectRecord, list[TaskRecord]]:
        """Create a project with its tasks (key, position, meta), and optionally content."""
        now = utcnow()
        try:
            with self.store.writing() as conn:
                pid = conn.execute(
                    insert(t.label_projects).values(
                        name=name,
                        dataset_version_id=version_id,
                        schema=schema,
                        overlap=overlap,
                        num_tasks=len(tasks),
                        created_at=now,
                        created_by=self.store.actor,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                if tasks:
                    conn.execute(
                        insert(t.label_tasks),
                        [
                            {"project_id": pid, "key": k, "position": p, "meta": m}
                            for k, p, m in tasks
                        ],
                    )
                task_rows = self._tasks(conn, pid)
                if changes is not None:
                    self._apply(conn, pid, changes, now)
                self.store.add_event(
                    conn,
                    "label.project.created",
                    name,
                    {"dataset_version_id": version_id, "tasks": len(tasks), "schema": schema},
                )
                project = self._project(conn, pid)
        except SAIntegrityError as e:
            raise ConflictError(
                f"a labeling project named {name!r} exists already",
                hint="choose another name, or work on the existing project",
            ) from e
        return project, task_rows

    def _project(self, conn: Connection, pid: int) -> ProjectRecord:
        row = conn.execute(select(t.label_projects).where(t.label_projects.c.id == pid)).mappings()
        data = dict(row.one())
        data["created_at"] = _aware(data["created_at"])
        return ProjectRecord(**data)

    def get_project(self, name: str) -> ProjectRecord | None:
        with self.store.reading() as conn:
            pid = conn.execute(
                select(t.label_projects.c.id).where(t.label_projects.c.name == name)
            ).scalar()
            return self._project(conn, pid) if pid is not None else None

    def list_projects(self) -> list[ProjectRecord]:
        with self.store.reading() as conn:
            ids = conn.execute(select(t.label_projects.c.id).order_by(t.label_projects.c.name))
            return [self._project(conn, pid) for (pid,) in ids.all()]

    # -- reads -------------------------------------------------------------------------
    @staticmethod
    def _tasks(conn: Connection, pid: int) -> list[TaskRecord]:
        c = t.label_tasks.c
        rows = conn.execute(
            select(c.id, c.key, c.position, c.meta)
            .where(c.project_id == pid)
            .order_by(c.position, c.id)
        ).all()
        return [TaskRecord(*row) for row in rows]

    def tasks(self, pid: int) -> list[TaskRecord]:
        with self.store.reading() as conn:
            return self._tasks(conn, pid)

    def annotators(self, pid: int) -> list[str]:
        c = t.label_annotators.c
        with self.store.reading() as conn:
            rows = conn.execute(select(c.name).where(c.project_id == pid).order_by(c.name))
            return [name for (name,) in rows.all()]

    def assignments(self, pid: int) -> list[tuple[int, str]]:
        c = t.label_assignments.c
        with self.store.reading() as conn:
            rows = conn.execute(select(c.task_id, c.annotator).where(c.project_id == pid))
            return [(tid, a) for tid, a in rows.all()]

    def annotations(self, pid: int, *, history: bool = False) -> list[AnnotationRecord]:
        """The current annotations of a project (with ``history``: every edit too)."""
        c = t.label_annotations.c
        stmt = (
            select(
                c.id,
                c.task_id,
                c.annotator,
                c.value,
                c.prediction_id,
                c.meta,
                c.created_at,
                c.replaced_at,
            )
            .where(c.project_id == pid)
            .order_by(c.id)
        )
        if not history:
            stmt = stmt.where(c.replaced_at.is_(None))
        with self.store.reading() as conn:
            rows = conn.execute(stmt).all()
        return [
            AnnotationRecord(i, tid, a, v, p, m, _aware(at), _aware(r))  # type: ignore[arg-type]
            for i, tid, a, v, p, m, at, r in rows
        ]

    def predictions(self, pid: int) -> list[PredictionRecord]:
        c = t.label_predictions.c
        stmt = (
            select(c.id, c.task_id, c.model, c.value, c.score, c.meta, c.created_at)
            .where(c.project_id == pid)
            .order_by(c.id)
        )
        with self.store.reading() as conn:
            rows = conn.execute(stmt).all()
        return [
            PredictionRecord(i, tid, m, v, s, meta, _aware(at))  # type: ignore[arg-type]
            for i, tid, m, v, s, meta, at in rows
        ]

    def decisions(self, pid: int) -> dict[int, tuple[Any, str]]:
        """task id -> (value, reviewer)."""
        c = t.label_decisions.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(c.task_id, c.value, c.reviewer).where(c.project_id == pid)
            ).all()
        return {tid: (v, r) for tid, v, r in rows}

    def counts(self, pid: int) -> dict[str, int]:
        """Numbers of current annotations and predictions, for listings."""
        a, p = t.label_annotations.c, t.label_predictions.c
        with self.store.reading() as conn:
            n_ann = conn.execute(
                select(func.count()).where(a.project_id == pid, a.replaced_at.is_(None))
            ).scalar()
            n_pred = conn.execute(select(func.count()).where(p.project_id == pid)).scalar()
        return {"annotations": int(n_ann or 0), "predictions": int(n_pred or 0)}

    # -- writes ------------------------------------------------------------------------
    def apply(self, project: ProjectRecord, changes: LabelChanges, event: str) -> list[int]:
        """Add annotators, assignments, predictions and annotations in one transaction.

        Returns the ids of the new predictions. A current annotation by the same
        annotator on the same task is superseded (kept as history).
        """
        now = utcnow()
        with self.store.writing() as conn:
            ids = self._apply(conn, project.id, changes, now)
            self.store.add_event(
                conn,
                event,
                project.name,
                {
                    "annotators": changes.annotators,
                    "assignments": len(changes.assignments),
                    "predictions": len(changes.predictions),
                    "annotations": len(changes.annotations),
                },
            )
        return ids

    def _apply(
        self, conn: Connection, pid: int, changes: LabelChanges, now: dt.datetime
    ) -> list[int]:
        keys: dict[str, int] = {}
        if any(
            isinstance(x, str)
            for x in (
                *(p.task for p in changes.predictions),
                *(a.task for a in changes.annotations),
                *(tid for tid, _ in changes.assignments),
            )
        ):
            c = t.label_tasks.c
            keys = {k: i for k, i in conn.execute(select(c.key, c.id).where(c.project_id == pid))}

        def tid(task: int | str) -> int:
            return keys[task] if isinstance(task, str) else task

        if changes.annotators:
            have = {
                n
                for (n,) in conn.execute(
                    select(t.label_annotators.c.name).where(t.label_annotators.c.project_id == pid)
                )
            }
            new = sorted(set(changes.annotators) - have)
            if new:
                conn.execute(
                    insert(t.label_annotators),
                    [{"project_id": pid, "name": n, "created_at": now} for n in new],
                )
        if changes.assignments:
            c = t.label_assignments.c
            have_pairs = {
                (task_id, a)
                for task_id, a in conn.execute(
                    select(c.task_id, c.annotator).where(c.project_id == pid)
                )
            }
            wanted = dict.fromkeys((tid(task), a) for task, a in changes.assignments)
            fresh = [pair for pair in wanted if pair not in have_pairs]
            if fresh:
                conn.execute(
                    insert(t.label_assignments),
                    [
                        {"task_id": task_id, "annotator": a, "project_id": pid, "assigned_at": now}
                        for task_id, a in fresh
                    ],
                )
        pred_ids: list[int] = []
        if changes.predictions:
            result = conn.execute(
                insert(t.label_predictions).returning(
                    t.label_predictions.c.id, sort_by_parameter_order=True
                ),
                [
                    {
                        "project_id": pid,
                        "task_id": tid(p.task),
                        "model": p.model,
                        "value": p.value,
                        "score": p.score,
                        "meta": p.meta,
                        "created_at": now,
                    }
                    for p in changes.predictions
                ],
            )
            pred_ids = [row[0] for row in result.all()]
        if changes.annotations:
            self._supersede(
                conn, pid, {(tid(a.task), a.annotator) for a in changes.annotations}, now
            )
            conn.execute(
                insert(t.label_annotations),
                [
                    {
                        "project_id": pid,
                        "task_id": tid(a.task),
                        "annotator": a.annotator,
                        "value": a.value,
                        "prediction_id": (
                            pred_ids[a.prediction_index]
                            if a.prediction_index is not None
                            else a.prediction_id
                        ),
                        "meta": a.meta,
                        "created_at": a.created_at or now,
                        "replaced_at": None,
                    }
                    for a in changes.annotations
                ],
            )
        return pred_ids

    @staticmethod
    def _supersede(
        conn: Connection, pid: int, pairs: set[tuple[int, str]], now: dt.datetime
    ) -> None:
        c = t.label_annotations.c
        current = conn.execute(
            select(c.id, c.task_id, c.annotator).where(c.project_id == pid, c.replaced_at.is_(None))
        ).all()
        old = [i for i, tid, a in current if (tid, a) in pairs]
        for chunk in _chunks(old):
            conn.execute(update(t.label_annotations).where(c.id.in_(chunk)).values(replaced_at=now))

    def decide(self, project: ProjectRecord, task_id: int, value: Any, reviewer: str) -> None:
        """Record a reviewer's decision for a task (replacing an earlier one)."""
        c = t.label_decisions.c
        with self.store.writing() as conn:
            conn.execute(t.label_decisions.delete().where(c.task_id == task_id))
            conn.execute(
                insert(t.label_decisions).values(
                    task_id=task_id,
                    project_id=project.id,
                    value=value,
                    reviewer=reviewer,
                    created_at=utcnow(),
                )
            )
            self.store.add_event(
                conn, "label.decision", project.name, {"task_id": task_id, "reviewer": reviewer}
            )


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    batch: list[int] = []
    for i in ids:
        batch.append(i)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch
