"""Records of registered models: versions, aliases, stages and every transition.

A version's number is allocated in the same transaction that inserts it, with the model
row locked, as dataset versions are. Every change of stage or alias writes a transition
row in that transaction too, so the history is complete by construction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow


@dataclass(frozen=True)
class ModelVersionRow:
    id: int
    model_id: int
    model: str
    version: int
    run_id: str | None
    source: str | None
    manifest_oid: str
    flavor: str
    signature: dict[str, Any] | None
    metrics: dict[str, Any] | None
    needs_trust: list[str] | None
    stage: str
    description: str | None
    created_at: dt.datetime
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True)
class Transition:
    id: int
    version: int | None
    kind: str
    alias: str | None
    from_stage: str | None
    to_stage: str | None
    reason: str | None
    forced: bool
    actor: str
    at: dt.datetime


class RegistryStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def _select(self) -> Any:
        return select(t.model_versions, t.models.c.name.label("model")).join(
            t.models, t.models.c.id == t.model_versions.c.model_id
        )

    @staticmethod
    def _row(row: Any) -> ModelVersionRow:
        data = dict(row)
        data["created_at"] = _aware(data["created_at"])
        return ModelVersionRow(**data)

    def _transition(
        self, conn: Connection, model_id: int, version_id: int | None, kind: str, **values: Any
    ) -> None:
        conn.execute(
            insert(t.model_transitions).values(
                model_id=model_id,
                version_id=version_id,
                kind=kind,
                actor=self.store.actor,
                at=utcnow(),
                forced=bool(values.pop("forced", False)),
                **values,
            )
        )

    # -- registering -------------------------------------------------------------------
    def register(self, name: str, values: dict[str, Any]) -> ModelVersionRow:
        return self.store.allocating(lambda: self._register(name, values), f"model {name!r}")

    def _register(self, name: str, values: dict[str, Any]) -> ModelVersionRow:
        now = utcnow()
        with self.store.writing() as conn:
            model_id = conn.execute(
                select(t.models.c.id).where(t.models.c.name == name).with_for_update()
            ).scalar()
            if model_id is None:
                model_id = conn.execute(
                    insert(t.models).values(name=name, created_at=now, created_by=self.store.actor)
                ).inserted_primary_key[0]  # type: ignore[index]
            number = (
                conn.execute(
                    select(func.max(t.model_versions.c.version)).where(
                        t.model_versions.c.model_id == model_id
                    )
                ).scalar()
                or 0
            ) + 1
            vid = conn.execute(
                insert(t.model_versions).values(
                    model_id=model_id,
                    version=number,
                    stage="registered",
                    created_at=now,
                    created_by=self.store.actor,
                    **values,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            self._transition(conn, model_id, vid, "registered", to_stage="registered")
            self.store.add_event(
                conn, "model.registered", f"{name}@{number}", {"run_id": values.get("run_id")}
            )
            row = conn.execute(self._select().where(t.model_versions.c.id == vid)).mappings()
            return self._row(row.one())

    # -- reading -----------------------------------------------------------------------
    def model_id(self, name: str) -> int | None:
        with self.store.reading() as conn:
            return conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()

    def models(self) -> list[dict[str, Any]]:
        m, v = t.models.c, t.model_versions.c
        stmt = (
            select(m.name, m.created_at, func.count(v.id), func.max(v.version))
            .select_from(t.models.outerjoin(t.model_versions, v.model_id == m.id))
            .group_by(m.id, m.name, m.created_at)
            .order_by(m.name)
        )
        with self.store.reading() as conn:
            rows = conn.execute(stmt).all()
        return [
            {"name": n, "created_at": _aware(at), "versions": int(k), "latest": latest}
            for n, at, k, latest in rows
        ]

    def versions(self, model_id: int) -> list[ModelVersionRow]:
        stmt = self._select().where(t.model_versions.c.model_id == model_id)
        with self.store.reading() as conn:
            rows = conn.execute(stmt.order_by(t.model_versions.c.version)).mappings().all()
        return [self._row(r) for r in rows]

    def version(self, model_id: int, number: int) -> ModelVersionRow | None:
        v = t.model_versions.c
        stmt = self._select().where(v.model_id == model_id, v.version == number)
        with self.store.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._row(row) if row else None

    def aliases(self, model_id: int) -> dict[str, int]:
        """alias -> version number."""
        a, v = t.model_aliases.c, t.model_versions.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(a.alias, v.version)
                .join(t.model_versions, v.id == a.version_id)
                .where(a.model_id == model_id)
                .order_by(a.alias)
            ).all()
        return {alias: number for alias, number in rows}

    def transitions(self, model_id: int) -> list[Transition]:
        tr, v = t.model_transitions.c, t.model_versions.c
        stmt = (
            select(
                tr.id,
                v.version,
                tr.kind,
                tr.alias,
                tr.from_stage,
                tr.to_stage,
                tr.reason,
                tr.forced,
                tr.actor,
                tr.at,
            )
            .select_from(t.model_transitions.outerjoin(t.model_versions, v.id == tr.version_id))
            .where(tr.model_id == model_id)
            .order_by(tr.at, tr.id)
        )
        with self.store.reading() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for i, version, kind, alias, frm, to, reason, forced, actor, at in rows:
            when = _aware(at)
            assert when is not None
            out.append(
                Transition(i, version, kind, alias, frm, to, reason, bool(forced), actor, when)
            )
        return out

    def retired_sources(self) -> set[tuple[str, str]]:
        """(run id, artifact folder) of retired versions, whose files gc may free."""
        v = t.model_versions.c
        with self.store.reading() as conn:
            rows = conn.execute(
                select(v.run_id, v.source).where(v.stage == "retired", v.run_id.is_not(None))
            ).all()
        return {(r, s) for r, s in rows if s}

    # -- changing ----------------------------------------------------------------------
    def set_alias(self, version: ModelVersionRow, alias: str, reason: str | None) -> None:
        with self.store.writing() as conn:
            conn.execute(
                delete(t.model_aliases).where(
                    t.model_aliases.c.model_id == version.model_id,
                    t.model_aliases.c.alias == alias,
                )
            )
            conn.execute(
                insert(t.model_aliases).values(
                    model_id=version.model_id, alias=alias, version_id=version.id
                )
            )
            self._transition(
                conn, version.model_id, version.id, "alias", alias=alias, reason=reason
            )
            self.store.add_event(conn, "model.alias.set", version.ref, {"alias": alias})

    def remove_alias(self, model_id: int, name: str, alias: str) -> bool:
        with self.store.writing() as conn:
            n = conn.execute(
                delete(t.model_aliases).where(
                    t.model_aliases.c.model_id == model_id, t.model_aliases.c.alias == alias
                )
            ).rowcount
            if n:
                self._transition(conn, model_id, None, "alias_removed", alias=alias)
                self.store.add_event(conn, "model.alias.removed", name, {"alias": alias})
        return bool(n)

    def set_stage(
        self,
        version: ModelVersionRow,
        stage: str,
        *,
        reason: str | None,
        forced: bool,
        exclusive: bool,
    ) -> list[ModelVersionRow]:
        """Move ``version`` to ``stage``; with ``exclusive``, other versions in that stage
        move to ``archived`` in the same transaction. Returns the versions archived."""
        v = t.model_versions.c
        moved: list[ModelVersionRow] = []
        with self.store.writing() as conn:
            if exclusive:
                others = (
                    conn.execute(
                        self._select().where(
                            v.model_id == version.model_id, v.stage == stage, v.id != version.id
                        )
                    )
                    .mappings()
                    .all()
                )
                for other in others:
                    row = self._row(other)
                    conn.execute(
                        update(t.model_versions).where(v.id == row.id).values(stage="archived")
                    )
                    self._transition(
                        conn,
                        row.model_id,
                        row.id,
                        "stage",
                        from_stage=stage,
                        to_stage="archived",
                        reason=f"replaced by {version.ref}",
                    )
                    moved.append(row)
            current = conn.execute(select(v.stage).where(v.id == version.id)).scalar()
            conn.execute(update(t.model_versions).where(v.id == version.id).values(stage=stage))
            self._transition(
                conn,
                version.model_id,
                version.id,
                "stage",
                from_stage=current,
                to_stage=stage,
                reason=reason,
                forced=forced,
            )
            self.store.add_event(
                conn,
                "model.stage",
                version.ref,
                {"from": current, "to": stage, "forced": forced, "reason": reason},
            )
        return moved
