"""Records of pipelines: each stage's last fingerprint and outputs, and each run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, insert, select, update

from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow


class PipelineStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def stage_state(self, pipeline: str, stage: str) -> tuple[str, dict[str, Any]] | None:
        c = t.pipeline_stages.c
        with self.store.reading() as conn:
            row = conn.execute(
                select(c.fingerprint, c.outputs).where(c.pipeline == pipeline, c.stage == stage)
            ).first()
        return (row[0], row[1]) if row else None

    def save_stage(
        self, pipeline: str, stage: str, fingerprint: str, outputs: dict[str, Any]
    ) -> None:
        c = t.pipeline_stages.c
        with self.store.writing() as conn:
            conn.execute(delete(t.pipeline_stages).where(c.pipeline == pipeline, c.stage == stage))
            conn.execute(
                insert(t.pipeline_stages).values(
                    pipeline=pipeline,
                    stage=stage,
                    fingerprint=fingerprint,
                    outputs=outputs,
                    updated_at=utcnow(),
                )
            )

    def start_run(self, pipeline: str) -> int:
        with self.store.writing() as conn:
            rid = conn.execute(
                insert(t.pipeline_runs).values(
                    pipeline=pipeline, status="running", stages={}, started_at=utcnow()
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            self.store.add_event(conn, "pipeline.run.started", pipeline, {"run": rid})
        return int(rid)

    def finish_run(self, run_id: int, status: str, stages: dict[str, Any]) -> None:
        with self.store.writing() as conn:
            conn.execute(
                update(t.pipeline_runs)
                .where(t.pipeline_runs.c.id == run_id)
                .values(status=status, stages=stages, finished_at=utcnow())
            )
            self.store.add_event(conn, "pipeline.run.finished", str(run_id), {"status": status})

    def runs(self, pipeline: str, limit: int = 20) -> list[dict[str, Any]]:
        c = t.pipeline_runs.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(t.pipeline_runs)
                .where(c.pipeline == pipeline)
                .order_by(c.id.desc())
                .limit(limit)
            ).mappings()
            return [_run(dict(r)) for r in rows]


def _run(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("started_at", "finished_at"):
        value: dt.datetime | None = _aware(row[key])
        row[key] = value.isoformat() if value else None
    return row
