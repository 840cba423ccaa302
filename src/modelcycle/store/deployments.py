"""Records of deployments, their history, prediction log segments and feedback.

Every change of a deployment writes the new state, a history row holding the state
before and after, and an event in one transaction, so the history is complete by
construction. A change names the generation it was computed from; when another writer
got there first the change is not applied and the caller computes it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.core.errors import ConflictError, NotFoundError
from modelcycle.store import schema as t
from modelcycle.store.metadata import MetadataStore, _aware, utcnow

# Request ids looked up per query: far below SQLite's limit on bound parameters.
_IDS_PER_QUERY = 2000


@dataclass(frozen=True)
class DeploymentState:
    """What a deployment routes: (ref, weight) pairs, shadow refs, the sticky header."""

    routes: tuple[tuple[str, float], ...]
    shadows: tuple[str, ...] = ()
    sticky_header: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "routes": [{"ref": ref, "weight": weight} for ref, weight in self.routes],
            "shadows": list(self.shadows),
            "sticky_header": self.sticky_header,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentState:
        return cls(
            tuple((str(r["ref"]), float(r["weight"])) for r in d["routes"]),
            tuple(str(s) for s in d.get("shadows") or ()),
            d.get("sticky_header"),
        )


@dataclass(frozen=True)
class DeploymentRow:
    id: int
    name: str
    model_id: int
    model: str
    state: DeploymentState
    generation: int
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


@dataclass(frozen=True)
class DeploymentChange:
    """One row of a deployment's history."""

    id: int
    generation: int
    kind: str  # created / route / shadow / rollback / deleted
    before: DeploymentState | None
    after: DeploymentState
    reason: str | None
    actor: str
    at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "kind": self.kind,
            "before": self.before.to_dict() if self.before else None,
            "after": self.after.to_dict(),
            "reason": self.reason,
            "actor": self.actor,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class NewSegment:
    deployment: str | None
    model: str
    version: int
    min_ts: dt.datetime
    max_ts: dt.datetime
    num_rows: int
    size_bytes: int
    oid: str


@dataclass(frozen=True)
class SegmentRow:
    id: int
    deployment: str | None
    model: str
    version: int
    min_ts: dt.datetime
    max_ts: dt.datetime
    num_rows: int
    size_bytes: int
    oid: str
    created_at: dt.datetime


@dataclass(frozen=True)
class FeedbackRow:
    request_id: str
    row: int
    value: Any
    ts: dt.datetime | None
    received_at: dt.datetime


# change kind -> event kind (in the audit log and for webhooks)
EVENT_KINDS = {
    "created": "deployment.created",
    "route": "deployment.routed",
    "shadow": "deployment.shadowed",
    "rollback": "deployment.rolled_back",
    "deleted": "deployment.deleted",
}


class DeploymentStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- deployments -------------------------------------------------------------------
    def _select(self) -> Any:
        d, m = t.deployments.c, t.models.c
        return select(t.deployments, m.name.label("model")).join(t.models, m.id == d.model_id)

    @staticmethod
    def _row(row: Any) -> DeploymentRow:
        data = dict(row)
        state = DeploymentState.from_dict(
            {
                "routes": data.pop("routes"),
                "shadows": data.pop("shadows"),
                "sticky_header": data.pop("sticky_header"),
            }
        )
        for key in ("created_at", "updated_at", "deleted_at"):
            data[key] = _aware(data[key])
        return DeploymentRow(state=state, **data)

    def get(self, name: str, *, include_deleted: bool = False) -> DeploymentRow | None:
        stmt = self._select().where(t.deployments.c.name == name)
        if not include_deleted:
            stmt = stmt.where(t.deployments.c.deleted_at.is_(None))
        with self.store.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._row(row) if row else None

    def live(self) -> list[DeploymentRow]:
        """Every deployment not deleted, by name."""
        d = t.deployments.c
        stmt = self._select().where(d.deleted_at.is_(None)).order_by(d.name)
        with self.store.reading() as conn:
            return [self._row(r) for r in conn.execute(stmt).mappings().all()]

    def names(self) -> list[str]:
        d = t.deployments.c
        with self.store.reading() as conn:
            return list(
                conn.execute(
                    select(d.name).where(d.deleted_at.is_(None)).order_by(d.name)
                ).scalars()
            )

    def create(
        self, name: str, model_id: int, state: DeploymentState, reason: str | None
    ) -> DeploymentRow:
        """A new deployment; a deleted one of that name comes back with its history."""
        d = t.deployments.c
        now = utcnow()
        values = {
            "model_id": model_id,
            "routes": state.to_dict()["routes"],
            "shadows": list(state.shadows),
            "sticky_header": state.sticky_header,
            "updated_at": now,
        }
        try:
            with self.store.writing() as conn:
                old = (
                    conn.execute(select(t.deployments).where(d.name == name).with_for_update())
                    .mappings()
                    .first()
                )
                if old is not None and old["deleted_at"] is None:
                    raise _exists(name)
                if old is None:
                    did = conn.execute(
                        insert(t.deployments).values(
                            name=name,
                            generation=1,
                            created_at=now,
                            created_by=self.store.actor,
                            **values,
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                    generation = 1
                else:
                    did, generation = old["id"], old["generation"] + 1
                    conn.execute(
                        update(t.deployments)
                        .where(d.id == did)
                        .values(
                            generation=generation,
                            created_at=now,
                            created_by=self.store.actor,
                            deleted_at=None,
                            **values,
                        )
                    )
                self._record(conn, did, name, generation, "created", None, state, reason)
                row = conn.execute(self._select().where(d.id == did)).mappings().one()
        except SAIntegrityError as e:
            # A concurrent create inserted the name between our read and our insert.
            raise _exists(name) from e
        return self._row(row)

    def change(
        self,
        name: str,
        kind: str,
        state: DeploymentState,
        *,
        expect_generation: int,
        reason: str | None,
        delete: bool = False,
    ) -> DeploymentRow | None:
        """Apply ``state`` (or delete) if the deployment is still at ``expect_generation``;
        None when another writer changed it meanwhile (nothing was written)."""
        d = t.deployments.c
        now = utcnow()
        with self.store.writing() as conn:
            current = (
                conn.execute(
                    self._select()
                    .where(d.name == name, d.deleted_at.is_(None))
                    .with_for_update(of=t.deployments)
                )
                .mappings()
                .first()
            )
            if current is None:
                raise NotFoundError(f"no deployment named {name!r}", hint="it was just deleted")
            before = self._row(current)
            if before.generation != expect_generation:
                return None
            generation = before.generation + 1
            conn.execute(
                update(t.deployments)
                .where(d.id == before.id)
                .values(
                    routes=state.to_dict()["routes"],
                    shadows=list(state.shadows),
                    sticky_header=state.sticky_header,
                    generation=generation,
                    updated_at=now,
                    deleted_at=now if delete else None,
                )
            )
            self._record(conn, before.id, name, generation, kind, before.state, state, reason)
            row = conn.execute(self._select().where(d.id == before.id)).mappings().one()
        return self._row(row)

    def _record(
        self,
        conn: Connection,
        deployment_id: int,
        name: str,
        generation: int,
        kind: str,
        before: DeploymentState | None,
        after: DeploymentState,
        reason: str | None,
    ) -> None:
        conn.execute(
            insert(t.deployment_changes).values(
                deployment_id=deployment_id,
                generation=generation,
                kind=kind,
                before=before.to_dict() if before else None,
                after=after.to_dict(),
                reason=reason,
                actor=self.store.actor,
                at=utcnow(),
            )
        )
        self.store.add_event(
            conn,
            EVENT_KINDS[kind],
            name,
            {
                "generation": generation,
                "before": before.to_dict() if before else None,
                "after": after.to_dict(),
                "reason": reason,
            },
        )

    def changes(self, deployment_id: int) -> list[DeploymentChange]:
        """A deployment's history, oldest first."""
        c = t.deployment_changes.c
        stmt = (
            select(t.deployment_changes)
            .where(c.deployment_id == deployment_id)
            .order_by(c.generation, c.id)
        )
        with self.store.reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        out = []
        for r in rows:
            at = _aware(r["at"])
            assert at is not None
            out.append(
                DeploymentChange(
                    r["id"],
                    r["generation"],
                    r["kind"],
                    DeploymentState.from_dict(r["before"]) if r["before"] else None,
                    DeploymentState.from_dict(r["after"]),
                    r["reason"],
                    r["actor"],
                    at,
                )
            )
        return out

    # -- prediction log segments --------------------------------------------------------
    def add_segments(self, segments: Sequence[NewSegment]) -> None:
        """Record segments whose blobs are stored already, in one transaction. No event:
        segments are data a server appends every few seconds, not a change of state."""
        if not segments:
            return
        now = utcnow()
        with self.store.writing() as conn:
            conn.execute(
                insert(t.prediction_segments),
                [
                    {
                        "deployment": s.deployment,
                        "model": s.model,
                        "version": s.version,
                        "min_ts": s.min_ts,
                        "max_ts": s.max_ts,
                        "num_rows": s.num_rows,
                        "size_bytes": s.size_bytes,
                        "oid": s.oid,
                        "created_at": now,
                    }
                    for s in segments
                ],
            )

    def has_segments(
        self, *, deployment: str | None = None, model: str | None = None, version: int | None = None
    ) -> bool:
        s = t.prediction_segments.c
        stmt = select(s.id).limit(1)
        if deployment is not None:
            stmt = stmt.where(s.deployment == deployment)
        if model is not None:
            stmt = stmt.where(s.model == model)
        if version is not None:
            stmt = stmt.where(s.version == version)
        with self.store.reading() as conn:
            return conn.execute(stmt).first() is not None

    def segments(
        self,
        *,
        deployment: str | None = None,
        model: str | None = None,
        version: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[SegmentRow]:
        """Segments that may hold rows in [since, until], oldest first. Times are UTC."""
        s = t.prediction_segments.c
        stmt = select(t.prediction_segments)
        if deployment is not None:
            stmt = stmt.where(s.deployment == deployment)
        if model is not None:
            stmt = stmt.where(s.model == model)
        if version is not None:
            stmt = stmt.where(s.version == version)
        if since is not None:
            stmt = stmt.where(s.max_ts >= since)
        if until is not None:
            stmt = stmt.where(s.min_ts <= until)
        with self.store.reading() as conn:
            rows = conn.execute(stmt.order_by(s.min_ts, s.id)).mappings().all()
        out = []
        for r in rows:
            data = dict(r)
            for key in ("min_ts", "max_ts", "created_at"):
                data[key] = _aware(data[key])
            out.append(SegmentRow(**data))
        return out

    # -- feedback ----------------------------------------------------------------------
    def add_feedback(self, items: Sequence[tuple[str, int, Any, dt.datetime | None]]) -> None:
        """Append (request id, row, value, ts) items in one transaction."""
        now = utcnow()
        with self.store.writing() as conn:
            conn.execute(
                insert(t.feedback),
                [
                    {
                        "request_id": rid,
                        "row_index": row,
                        "value": value,
                        "ts": ts,
                        "received_at": now,
                        "received_by": self.store.actor,
                    }
                    for rid, row, value, ts in items
                ],
            )
            self.store.add_event(conn, "feedback.added", "feedback", {"items": len(items)})

    def feedback_for(self, request_ids: Sequence[str]) -> dict[tuple[str, int], FeedbackRow]:
        """The feedback received last for each row of ``request_ids`` that has any."""
        f = t.feedback.c
        out: dict[tuple[str, int], FeedbackRow] = {}
        with self.store.reading() as conn:
            for chunk in _chunks(sorted(set(request_ids)), _IDS_PER_QUERY):
                stmt = (
                    select(f.request_id, f.row_index, f.value, f.ts, f.received_at)
                    .where(f.request_id.in_(chunk))
                    .order_by(f.id)
                )
                for rid, row, value, ts, received in conn.execute(stmt):
                    at = _aware(received)
                    assert at is not None
                    out[rid, row] = FeedbackRow(rid, row, value, _aware(ts), at)  # last wins
        return out


def _exists(name: str) -> ConflictError:
    return ConflictError(
        f"deployment {name!r} exists already",
        hint=f"change its routes with `modelcycle deploy route {name} …`, or choose another name",
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
