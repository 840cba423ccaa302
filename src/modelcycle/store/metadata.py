"""The metadata store: every record modelcycle keeps besides blobs.

All writes of one logical change (a version, its lineage and its event) happen in one
transaction. Version numbers are allocated inside that transaction with the dataset row
locked, so concurrent writers get distinct numbers and none is lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RowMapping, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError

from modelcycle.core.errors import ConflictError, StorageError, UsageError
from modelcycle.store import schema as t
from modelcycle.store.engine import ensure_schema, make_engine

T = TypeVar("T")


_ACTING: ContextVar[str | None] = ContextVar("modelcycle_actor", default=None)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Record every change made in this context (thread or task) as ``actor``."""
    token = _ACTING.set(actor)
    try:
        yield
    finally:
        _ACTING.reset(token)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    kind: str
    created_at: dt.datetime
    created_by: str


@dataclass(frozen=True)
class VersionRecord:
    id: int
    dataset_id: int
    dataset: str
    version: int
    kind: str
    hash_algorithm: str
    content_hash: str
    manifest_oid: str
    num_rows: int | None
    num_files: int | None
    size_bytes: int
    schema: list[dict[str, Any]] | None
    profile: dict[str, Any] | None
    step: dict[str, Any]
    cache_key: str | None
    message: str | None
    created_at: dt.datetime
    created_by: str
    deleted_at: dt.datetime | None

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"


@dataclass
class NewVersion:
    """What a caller supplies to create a version."""

    dataset: str
    kind: str
    hash_algorithm: str
    content_hash: str
    manifest_oid: str
    size_bytes: int
    step: dict[str, Any]
    num_rows: int | None = None
    num_files: int | None = None
    schema: list[dict[str, Any]] | None = None
    profile: dict[str, Any] | None = None
    cache_key: str | None = None
    message: str | None = None
    parents: list[tuple[int, str]] = field(default_factory=list)  # (version id, role)


@dataclass(frozen=True)
class EventRecord:
    id: int
    at: dt.datetime
    actor: str
    kind: str
    subject: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "kind": self.kind,
            "subject": self.subject,
            "payload": self.payload,
        }


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; every time modelcycle stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC (naive means UTC), as every stored time is; SQLite compares the
    stored text, so the zone must match. Times beyond the calendar's ends after the
    shift are clamped to them."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        edge = dt.datetime.min if value.year == dt.MINYEAR else dt.datetime.max
        return edge.replace(tzinfo=dt.UTC)


class MetadataStore:
    """Records of datasets, versions, lineage, tags and events in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, actor: str) -> None:
        self.url = url
        self._actor = actor
        self.engine: Engine = make_engine(url)
        ensure_schema(self.engine)

    @property
    def actor(self) -> str:
        """Who changes are recorded as: the workspace's actor, or the one `acting_as`
        names for the current context (a server request's token)."""
        return _ACTING.get() or self._actor

    def close(self) -> None:
        self.engine.dispose()

    def side_schema_url(self, schema: str) -> str:
        """A PostgreSQL URL whose tables land in ``schema`` (created if missing), for
        libraries that manage tables of their own beside the store's."""
        from sqlalchemy import text

        with self.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        url = self.engine.url.render_as_string(hide_password=False)
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}options=-csearch_path%3D{schema}"

    # -- transactions ---------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as e:
            raise StorageError(
                f"cannot read the metadata store: {e.orig}",
                hint="check that the database is reachable and not corrupted",
            ) from e

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.info["write"] = True
                try:
                    with conn.begin():
                        yield conn
                finally:
                    conn.info.pop("write", None)
        except OperationalError as e:
            raise StorageError(
                f"cannot write the metadata store: {e.orig}",
                hint="check free disk space and that the database is reachable; "
                "nothing was changed",
            ) from e

    def add_event(self, conn: Connection, kind: str, subject: str, payload: dict[str, Any]) -> None:
        conn.execute(
            insert(t.events).values(
                at=utcnow(), actor=self.actor, kind=kind, subject=subject, payload=payload
            )
        )

    # -- datasets -------------------------------------------------------------------
    def get_dataset(self, name: str) -> DatasetRecord | None:
        with self.reading() as conn:
            row = (
                conn.execute(select(t.datasets).where(t.datasets.c.name == name)).mappings().first()
            )
        return DatasetRecord(**row) if row else None

    def list_datasets(self) -> list[tuple[DatasetRecord, int, int | None]]:
        """Each dataset with its number of live versions and its latest version number."""
        v = t.dataset_versions
        live = v.c.deleted_at.is_(None)
        stmt = (
            select(t.datasets, func.count(v.c.id).label("n"), func.max(v.c.version).label("latest"))
            .select_from(t.datasets.outerjoin(v, and_(v.c.dataset_id == t.datasets.c.id, live)))
            .group_by(*t.datasets.c)
            .order_by(t.datasets.c.name)
        )
        with self.reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        out = []
        for row in rows:
            data = dict(row)
            n, latest = data.pop("n"), data.pop("latest")
            out.append((DatasetRecord(**data), int(n), latest))
        return out

    # -- versions -------------------------------------------------------------------
    def _version_select(self) -> Any:
        return select(t.dataset_versions, t.datasets.c.name.label("dataset")).join(
            t.datasets, t.datasets.c.id == t.dataset_versions.c.dataset_id
        )

    @staticmethod
    def _version(row: RowMapping) -> VersionRecord:
        data = dict(row)
        data["created_at"] = _aware(data["created_at"])
        data["deleted_at"] = _aware(data["deleted_at"])
        return VersionRecord(**data)

    def create_version(self, new: NewVersion) -> VersionRecord:
        """Insert a version (creating its dataset on first use) with lineage and event."""
        return self.allocating(lambda: self._create_version(new), f"{new.dataset!r}")

    @staticmethod
    def allocating(insert_next: Callable[[], T], what: str) -> T:
        """Run ``insert_next`` (a transaction that reads the highest number and inserts
        the next), again when a concurrent writer took the number or created the parent
        row first: the transaction rolled back, so a retry is safe."""
        for attempt in range(5):
            try:
                return insert_next()
            except SAIntegrityError as e:
                if attempt == 4:
                    raise ConflictError(
                        f"could not allocate a version of {what}: {e.orig}",
                        hint="retry the command",
                    ) from e
        raise AssertionError("unreachable")

    def _create_version(self, new: NewVersion) -> VersionRecord:
        now = utcnow()
        with self.writing() as conn:
            ds = (
                conn.execute(
                    select(t.datasets).where(t.datasets.c.name == new.dataset).with_for_update()
                )
                .mappings()
                .first()
            )
            if ds is None:
                ds_id = conn.execute(
                    insert(t.datasets).values(
                        name=new.dataset, kind=new.kind, created_at=now, created_by=self.actor
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                self.add_event(conn, "dataset.created", new.dataset, {"kind": new.kind})
            else:
                ds_id = ds["id"]
                if ds["kind"] != new.kind:
                    raise ConflictError(
                        f"dataset {new.dataset!r} holds {ds['kind']} versions, not {new.kind}",
                        hint="use another dataset name for this data",
                    )
            number = (
                conn.execute(
                    select(func.max(t.dataset_versions.c.version)).where(
                        t.dataset_versions.c.dataset_id == ds_id
                    )
                ).scalar()
                or 0
            ) + 1
            values = {
                "dataset_id": ds_id,
                "version": number,
                "kind": new.kind,
                "hash_algorithm": new.hash_algorithm,
                "content_hash": new.content_hash,
                "manifest_oid": new.manifest_oid,
                "num_rows": new.num_rows,
                "num_files": new.num_files,
                "size_bytes": new.size_bytes,
                "schema": new.schema,
                "profile": new.profile,
                "step": new.step,
                "cache_key": new.cache_key,
                "message": new.message,
                "created_at": now,
                "created_by": self.actor,
            }
            vid = conn.execute(insert(t.dataset_versions).values(**values)).inserted_primary_key[0]  # type: ignore[index]
            if new.parents:
                conn.execute(
                    insert(t.version_parents),
                    [{"child_id": vid, "parent_id": p, "role": role} for p, role in new.parents],
                )
            self.add_event(
                conn,
                "dataset.version.created",
                f"{new.dataset}@{number}",
                {
                    "content_hash": new.content_hash,
                    "step": new.step.get("op"),
                    "parents": [p for p, _ in new.parents],
                },
            )
            row = (
                conn.execute(self._version_select().where(t.dataset_versions.c.id == vid))
                .mappings()
                .one()
            )
        return self._version(row)

    def versions(self, dataset_id: int, *, include_deleted: bool = False) -> list[VersionRecord]:
        stmt = self._version_select().where(t.dataset_versions.c.dataset_id == dataset_id)
        if not include_deleted:
            stmt = stmt.where(t.dataset_versions.c.deleted_at.is_(None))
        with self.reading() as conn:
            rows = conn.execute(stmt.order_by(t.dataset_versions.c.version)).mappings().all()
        return [self._version(r) for r in rows]

    def version_by_number(self, dataset_id: int, number: int) -> VersionRecord | None:
        stmt = self._version_select().where(
            t.dataset_versions.c.dataset_id == dataset_id, t.dataset_versions.c.version == number
        )
        with self.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._version(row) if row else None

    def version_by_id(self, version_id: int) -> VersionRecord | None:
        with self.reading() as conn:
            row = (
                conn.execute(self._version_select().where(t.dataset_versions.c.id == version_id))
                .mappings()
                .first()
            )
        return self._version(row) if row else None

    def versions_by_hash_prefix(self, dataset_id: int, prefix: str) -> list[VersionRecord]:
        stmt = self._version_select().where(
            t.dataset_versions.c.dataset_id == dataset_id,
            t.dataset_versions.c.content_hash.startswith(prefix, autoescape=True),
        )
        with self.reading() as conn:
            return [self._version(r) for r in conn.execute(stmt).mappings().all()]

    def version_by_cache_key(self, cache_key: str) -> VersionRecord | None:
        stmt = (
            self._version_select()
            .where(
                t.dataset_versions.c.cache_key == cache_key,
                t.dataset_versions.c.deleted_at.is_(None),
            )
            .order_by(t.dataset_versions.c.id)
        )
        with self.reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return self._version(row) if row else None

    def parents(self, version_id: int) -> list[tuple[VersionRecord, str]]:
        p = t.version_parents
        stmt = (
            self._version_select()
            .add_columns(p.c.role)
            .join(p, p.c.parent_id == t.dataset_versions.c.id)
            .where(p.c.child_id == version_id)
            .order_by(p.c.parent_id)
        )
        with self.reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        out = []
        for row in rows:
            data = dict(row)
            role = data.pop("role")
            out.append((self._version(data), role))  # type: ignore[arg-type]
        return out

    def children(self, version_id: int) -> list[VersionRecord]:
        p = t.version_parents
        stmt = (
            self._version_select()
            .join(p, p.c.child_id == t.dataset_versions.c.id)
            .where(p.c.parent_id == version_id, t.dataset_versions.c.deleted_at.is_(None))
        )
        with self.reading() as conn:
            return [self._version(r) for r in conn.execute(stmt).mappings().all()]

    def live_manifests(self) -> list[tuple[str, str, str]]:
        """(ref, kind, manifest oid) of every version not deleted."""
        stmt = self._version_select().where(t.dataset_versions.c.deleted_at.is_(None))
        with self.reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [(f"{r['dataset']}@{r['version']}", r["kind"], r["manifest_oid"]) for r in rows]

    def live_artifacts(self) -> list[tuple[str, str]]:
        """(run id/path, blob oid) of every artifact of a run not deleted, except the
        package files of retired model versions (their blobs may be freed); every
        stored evaluation's result (kept with the metadata, even of retired versions);
        every prediction log segment; the drift sketches of live dataset versions; and the
        detail of every monitor result."""
        a, r, v = t.run_artifacts.c, t.runs.c, t.model_versions.c
        stmt = (
            select(a.run_id, a.path, a.oid)
            .join(t.runs, r.id == a.run_id)
            .where(r.deleted_at.is_(None))
        )
        with self.reading() as conn:
            retired: dict[str, tuple[str, ...]] = {}  # run id -> retired package folders
            for rid, src in conn.execute(select(v.run_id, v.source).where(v.stage == "retired")):
                if rid and src:
                    retired[rid] = (*retired.get(rid, ()), src + "/")
            out = []
            for rid, path, oid in conn.execute(stmt):
                if rid in retired and path.startswith(retired[rid]):
                    continue
                out.append((f"run {rid}/{path}", oid))
            e = t.evaluations.c
            for eid, oid in conn.execute(select(e.id, e.result_oid)):
                out.append((f"evaluation {eid}", oid))
            ps = t.prediction_segments.c
            for sid, deployment, model, version, oid in conn.execute(
                select(ps.id, ps.deployment, ps.model, ps.version, ps.oid)
            ):
                where = f"deployment {deployment}" if deployment else f"{model}@{version}"
                out.append((f"prediction segment {sid} of {where}", oid))
            sk, dv = t.dataset_sketches.c, t.dataset_versions.c
            for kid, oid in conn.execute(
                select(sk.id, sk.sketch_oid)
                .join(t.dataset_versions, dv.id == sk.dataset_version_id)
                .where(dv.deleted_at.is_(None))
            ):
                out.append((f"dataset sketch {kid}", oid))
            mr = t.monitor_results.c
            for rid, oid in conn.execute(
                select(mr.id, mr.detail_oid).where(mr.detail_oid.is_not(None))
            ):
                out.append((f"monitor result {rid}", oid))
        return out

    def live_model_manifests(self) -> list[tuple[str, str]]:
        """(model ref, manifest oid) of every registered version not retired."""
        v, m = t.model_versions.c, t.models.c
        stmt = (
            select(m.name, v.version, v.manifest_oid)
            .join(t.models, m.id == v.model_id)
            .where(v.stage != "retired")
        )
        with self.reading() as conn:
            return [(f"{n}@{num}", oid) for n, num, oid in conn.execute(stmt)]

    def delete_versions(self, versions: Sequence[VersionRecord], reason: dict[str, Any]) -> None:
        """Mark versions deleted (lineage metadata stays; their blobs become collectable)."""
        now = utcnow()
        with self.writing() as conn:
            for v in versions:
                conn.execute(
                    update(t.dataset_versions)
                    .where(t.dataset_versions.c.id == v.id)
                    .values(deleted_at=now)
                )
                conn.execute(delete(t.dataset_tags).where(t.dataset_tags.c.version_id == v.id))
                self.add_event(conn, "dataset.version.deleted", v.ref, reason)

    # -- tags -----------------------------------------------------------------------
    def set_tag(self, version: VersionRecord, name: str) -> None:
        with self.writing() as conn:
            conn.execute(
                delete(t.dataset_tags).where(
                    t.dataset_tags.c.dataset_id == version.dataset_id, t.dataset_tags.c.name == name
                )
            )
            conn.execute(
                insert(t.dataset_tags).values(
                    dataset_id=version.dataset_id,
                    name=name,
                    version_id=version.id,
                    created_at=utcnow(),
                )
            )
            self.add_event(conn, "dataset.tag.set", version.ref, {"tag": name})

    def remove_tag(self, dataset_id: int, dataset: str, name: str) -> bool:
        with self.writing() as conn:
            n = conn.execute(
                delete(t.dataset_tags).where(
                    t.dataset_tags.c.dataset_id == dataset_id, t.dataset_tags.c.name == name
                )
            ).rowcount
            if n:
                self.add_event(conn, "dataset.tag.removed", dataset, {"tag": name})
        return bool(n)

    def tag_target(self, dataset_id: int, name: str) -> int | None:
        with self.reading() as conn:
            return conn.execute(
                select(t.dataset_tags.c.version_id).where(
                    t.dataset_tags.c.dataset_id == dataset_id, t.dataset_tags.c.name == name
                )
            ).scalar()

    def tags(self, dataset_id: int) -> dict[int, list[str]]:
        """version id -> tag names."""
        with self.reading() as conn:
            rows = conn.execute(
                select(t.dataset_tags.c.version_id, t.dataset_tags.c.name)
                .where(t.dataset_tags.c.dataset_id == dataset_id)
                .order_by(t.dataset_tags.c.name)
            ).all()
        out: dict[int, list[str]] = {}
        for vid, name in rows:
            out.setdefault(vid, []).append(name)
        return out

    # -- events ---------------------------------------------------------------------
    def record_event(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        with self.writing() as conn:
            self.add_event(conn, kind, subject, payload)

    def events(
        self,
        *,
        limit: int = 100,
        kind: str | None = None,
        subject: str | None = None,
        actor: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        offset: int = 0,
    ) -> list[EventRecord]:
        """The newest ``limit`` events that match, after skipping the ``offset`` newest,
        oldest first. ``kind`` and ``subject`` match by prefix, ``actor`` exactly (an
        index serves it); ``since`` is inclusive, ``until`` exclusive."""
        if limit < 1 or offset < 0:
            raise UsageError(
                f"cannot read {limit} events after skipping {offset}",
                hint="limit counts from 1 and offset from 0",
            )
        for what, text in (("kind", kind), ("subject", subject), ("actor", actor)):
            if text and "\x00" in text:  # PostgreSQL cannot compare text with one
                raise UsageError(
                    f"the {what} filter contains a NUL character, which no event holds",
                    hint=f"remove it from the {what} filter",
                )
        c = t.events.c
        # Newest first by time (the id breaks ties), so that ix_events_at, or
        # ix_events_actor_at for one actor, yields the rows in order: no sort.
        stmt = select(t.events).order_by(c.at.desc(), c.id.desc()).offset(offset).limit(limit)
        if kind:
            stmt = stmt.where(c.kind.startswith(kind, autoescape=True))
        if subject:
            stmt = stmt.where(c.subject.startswith(subject, autoescape=True))
        if actor:
            stmt = stmt.where(c.actor == actor)
        if since is not None:
            stmt = stmt.where(c.at >= _utc(since))
        if until is not None:
            stmt = stmt.where(c.at < _utc(until))
        with self.reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [EventRecord(**{**dict(r), "at": _aware(r["at"])}) for r in reversed(rows)]
