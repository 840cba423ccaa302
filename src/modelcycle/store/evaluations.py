"""Records of evaluations: one per (model version, dataset version, options).

The row holds the headline metrics; the full result (curves, importance, slices) is a
blob written before the row, so a crash leaves at most an unreferenced blob.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow


@dataclass(frozen=True)
class EvaluationRow:
    id: int
    model_version_id: int
    model_ref: str
    dataset_version_id: int
    dataset_ref: str
    options_key: str
    options: dict[str, Any]
    task: str
    num_rows: int
    metrics: dict[str, Any]
    result_oid: str
    seconds: float
    created_at: dt.datetime
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model_ref,
            "data": self.dataset_ref,
            "task": self.task,
            "rows": self.num_rows,
            "options": self.options,
            "metrics": self.metrics,
            "seconds": round(self.seconds, 3),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


class EvaluationStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def _select(self) -> Any:
        e, mv, m = t.evaluations.c, t.model_versions.c, t.models.c
        dv, d = t.dataset_versions.c, t.datasets.c
        return (
            select(
                t.evaluations,
                m.name.label("model_name"),
                mv.version.label("model_version"),
                d.name.label("dataset_name"),
                dv.version.label("dataset_version"),
            )
            .join(t.model_versions, mv.id == e.model_version_id)
            .join(t.models, m.id == mv.model_id)
            .join(t.dataset_versions, dv.id == e.dataset_version_id)
            .join(t.datasets, d.id == dv.dataset_id)
        )

    @staticmethod
    def _row(row: Any) -> EvaluationRow:
        data = dict(row)
        model_ref = f"{data.pop('model_name')}@{data.pop('model_version')}"
        dataset_ref = f"{data.pop('dataset_name')}@{data.pop('dataset_version')}"
        data["created_at"] = _aware(data["created_at"])
        return EvaluationRow(model_ref=model_ref, dataset_ref=dataset_ref, **data)

    def find(
        self, model_version_id: int, dataset_version_id: int, options_key: str
    ) -> EvaluationRow | None:
        e = t.evaluations.c
        stmt = self._select().where(
            e.model_version_id == model_version_id,
            e.dataset_version_id == dataset_version_id,
            e.options_key == options_key,
        )
        with self.store.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._row(row) if row else None

    def get(self, evaluation_id: int) -> EvaluationRow | None:
        with self.store.reading() as conn:
            row = (
                conn.execute(self._select().where(t.evaluations.c.id == evaluation_id))
                .mappings()
                .first()
            )
        return self._row(row) if row else None

    def for_model_version(self, model_version_id: int) -> list[EvaluationRow]:
        e = t.evaluations.c
        stmt = self._select().where(e.model_version_id == model_version_id).order_by(e.id)
        with self.store.reading() as conn:
            return [self._row(r) for r in conn.execute(stmt).mappings().all()]

    def add(
        self,
        *,
        model_version_id: int,
        model_ref: str,
        dataset_version_id: int,
        options_key: str,
        options: dict[str, Any],
        task: str,
        num_rows: int,
        metrics: dict[str, Any],
        result_oid: str,
        seconds: float,
    ) -> EvaluationRow:
        """Insert the evaluation; if an identical one was stored meanwhile, return that."""
        try:
            with self.store.writing() as conn:
                eid = conn.execute(
                    insert(t.evaluations).values(
                        model_version_id=model_version_id,
                        dataset_version_id=dataset_version_id,
                        options_key=options_key,
                        options=options,
                        task=task,
                        num_rows=num_rows,
                        metrics=metrics,
                        result_oid=result_oid,
                        seconds=seconds,
                        created_at=utcnow(),
                        created_by=self.store.actor,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                self.store.add_event(
                    conn, "model.evaluated", model_ref, {"evaluation": eid, "metrics": metrics}
                )
        except SAIntegrityError:
            found = self.find(model_version_id, dataset_version_id, options_key)
            if found is None:
                raise
            return found
        stored = self.get(int(eid))
        assert stored is not None
        return stored
