"""Records of dataset sketches: one per (dataset version, kind, options).

A sketch (e.g. the per-column summaries drift detection compares against) is computed
once from a version's data and kept as a blob, written before its row: a crash leaves at
most an unreferenced blob. A version's sketches go with it: once the version is deleted,
``gc`` may free their blobs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow


@dataclass(frozen=True)
class SketchRow:
    id: int
    dataset_version_id: int
    kind: str
    options_key: str
    options: dict[str, Any]
    sketch_oid: str
    size_bytes: int
    created_at: dt.datetime


class SketchStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    @staticmethod
    def _row(row: Any) -> SketchRow:
        data = dict(row)
        data["created_at"] = _aware(data["created_at"])
        return SketchRow(**data)

    def find(self, dataset_version_id: int, kind: str, options_key: str) -> SketchRow | None:
        s = t.dataset_sketches.c
        stmt = select(t.dataset_sketches).where(
            s.dataset_version_id == dataset_version_id,
            s.kind == kind,
            s.options_key == options_key,
        )
        with self.store.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._row(row) if row else None

    def for_version(self, dataset_version_id: int) -> list[SketchRow]:
        s = t.dataset_sketches.c
        stmt = select(t.dataset_sketches).where(s.dataset_version_id == dataset_version_id)
        with self.store.reading() as conn:
            return [self._row(r) for r in conn.execute(stmt.order_by(s.id)).mappings().all()]

    def add(
        self,
        *,
        dataset_version_id: int,
        dataset_ref: str,
        kind: str,
        options_key: str,
        options: dict[str, Any],
        sketch_oid: str,
        size_bytes: int,
    ) -> SketchRow:
        """Record a sketch whose blob is stored; if an equal one was recorded meanwhile,
        return that one."""
        try:
            with self.store.writing() as conn:
                conn.execute(
                    insert(t.dataset_sketches).values(
                        dataset_version_id=dataset_version_id,
                        kind=kind,
                        options_key=options_key,
                        options=options,
                        sketch_oid=sketch_oid,
                        size_bytes=size_bytes,
                        created_at=utcnow(),
                    )
                )
                self.store.add_event(
                    conn, "dataset.sketch.created", dataset_ref, {"kind": kind, "oid": sketch_oid}
                )
        except SAIntegrityError:
            pass
        found = self.find(dataset_version_id, kind, options_key)
        if found is None:  # pragma: no cover - the insert or a concurrent one succeeded
            raise RuntimeError("a stored sketch row vanished")
        return found

    def replace(self, row: SketchRow, *, dataset_ref: str, sketch_oid: str, size: int) -> SketchRow:
        """Point ``row`` at a recomputed blob (its old blob was missing or corrupted)."""
        with self.store.writing() as conn:
            conn.execute(
                update(t.dataset_sketches)
                .where(t.dataset_sketches.c.id == row.id)
                .values(sketch_oid=sketch_oid, size_bytes=size, created_at=utcnow())
            )
            self.store.add_event(
                conn,
                "dataset.sketch.replaced",
                dataset_ref,
                {"kind": row.kind, "old": row.sketch_oid, "oid": sketch_oid},
            )
        found = self.find(row.dataset_version_id, row.kind, row.options_key)
        assert found is not None
        return found

    def live(self) -> list[tuple[str, str]]:
        """(``sketch of NAME@N``, blob oid) of every sketch of a version not deleted."""
        s, v, d = t.dataset_sketches.c, t.dataset_versions.c, t.datasets.c
        stmt = (
            select(d.name, v.version, s.sketch_oid)
            .join(t.dataset_versions, v.id == s.dataset_version_id)
            .join(t.datasets, d.id == v.dataset_id)
            .where(v.deleted_at.is_(None))
        )
        with self.store.reading() as conn:
            return [(f"sketch of {n}@{num}", oid) for n, num, oid in conn.execute(stmt)]
