"""Recording a new dataset version through the standard library's sqlite3.

``modelcycle dataset add NAME FOLDER`` is run again and again as a folder changes, and
importing SQLAlchemy alone takes longer than re-adding a 20,000-file folder whose stat
cache is warm; adding a table pays the same half second. For the plain case (a SQLite
store at HEAD_REVISION) the quick CLI path records the version here instead of through
`MetadataStore.create_version`.

It writes what ``create_version`` writes, in one transaction of the same shape (the
dataset row on first use, the version, its parent, and the ``dataset.created`` /
``dataset.version.created`` events), with values in the formats SQLAlchemy stores on
SQLite: times as ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, JSON columns as ``json.dumps``
text (``null`` for None). ``tests/integration/test_quick_cli.py`` compares the rows both
paths write. Anything unexpected raises `QuickWriteRefused` or `sqlite3.Error` before the
commit, and the caller takes the ordinary path.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

from modelcycle.store.engine_constants import HEAD_REVISION


class QuickWriteRefused(Exception):
    """The store is not in the state this module knows how to write; nothing was written."""


class NewQuickVersion(NamedTuple):
    """The fields of a version added from a file or folder that the caller decides."""

    dataset: str
    kind: str  # "files" or "table"
    hash_algorithm: str
    content_hash: str
    size_bytes: int
    step: dict[str, Any]
    message: str | None
    parent_id: int | None  # the previous version (role "previous"), if any
    num_files: int | None = None  # files
    num_rows: int | None = None  # table
    schema: list[dict[str, str]] | None = None  # table
    profile: dict[str, Any] | None = None  # table


class RecordedVersion(NamedTuple):
    id: int
    version: int

    def ref(self, dataset: str) -> str:
        return f"{dataset}@{self.version}"


def _stored_time(value: dt.datetime) -> str:
    # What SQLAlchemy's SQLite DateTime stores: the UTC wall time, always with microseconds.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _json(value: Any) -> str:
    # What SQLAlchemy's JSON type stores with the default serializer (None as 'null').
    return json.dumps(value)


def check_writable(db_path: Path) -> None:
    """Raise `QuickWriteRefused` unless `record_version` can write this store (a
    read-only look, so that a caller can step aside before doing any work)."""
    if not db_path.is_file():
        raise QuickWriteRefused(f"no SQLite store at {db_path}")
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        _check_schema(conn)
    finally:
        conn.close()


def record_version(db_path: Path, new: NewQuickVersion, *, actor: str) -> RecordedVersion:
    """Insert a version (creating its dataset on first use) with its lineage and
    events, as `MetadataStore.create_version` does."""
    if not db_path.is_file():
        raise QuickWriteRefused(f"no SQLite store at {db_path}")
    # The same connection set-up as modelcycle.store.engine, transactions included:
    # autocommit mode and BEGIN IMMEDIATE, so that concurrent writers queue up.
    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            recorded = _insert(conn, new, actor)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return recorded
    finally:
        conn.close()


# The columns written here, table by table. A migration that changes one of these tables
# makes the quick path step aside (and its test fail) until this module follows.
_COLUMNS = {
    "datasets": ("id", "name", "kind", "created_at", "created_by"),
    "dataset_versions": (
        "id",
        "dataset_id",
        "version",
        "kind",
        "hash_algorithm",
        "content_hash",
        "manifest_oid",
        "num_rows",
        "num_files",
        "size_bytes",
        "schema",
        "profile",
        "step",
        "cache_key",
        "message",
        "created_at",
        "created_by",
        "deleted_at",
    ),
    "version_parents": ("child_id", "parent_id", "role"),
    "events": ("id", "at", "actor", "kind", "subject", "payload"),
}


def _check_schema(conn: sqlite3.Connection) -> None:
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    if revision is None or revision[0] != HEAD_REVISION:
        raise QuickWriteRefused(f"the store is at revision {revision}, not {HEAD_REVISION}")
    for table, expected in _COLUMNS.items():
        columns = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
        if columns != expected:
            raise QuickWriteRefused(f"table {table} has columns {columns}, not {expected}")


def _insert(conn: sqlite3.Connection, new: NewQuickVersion, actor: str) -> RecordedVersion:
    _check_schema(conn)
    now = _stored_time(dt.datetime.now(dt.UTC))
    row = conn.execute("SELECT id, kind FROM datasets WHERE name = ?", (new.dataset,)).fetchone()
    if row is None:
        cursor = conn.execute(
            "INSERT INTO datasets (name, kind, created_at, created_by) VALUES (?, ?, ?, ?)",
            (new.dataset, new.kind, now, actor),
        )
        dataset_id = cursor.lastrowid
        _event(conn, actor, "dataset.created", new.dataset, {"kind": new.kind})
    else:
        dataset_id, kind = row
        if kind != new.kind:
            # The ordinary path raises the ConflictError that explains this.
            raise QuickWriteRefused(f"dataset {new.dataset!r} holds {kind} versions")
    (number,) = conn.execute(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM dataset_versions WHERE dataset_id = ?",
        (dataset_id,),
    ).fetchone()
    cursor = conn.execute(
        "INSERT INTO dataset_versions (dataset_id, version, kind, hash_algorithm, "
        "content_hash, manifest_oid, num_rows, num_files, size_bytes, schema, profile, "
        "step, cache_key, message, created_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            dataset_id,
            number,
            new.kind,
            new.hash_algorithm,
            new.content_hash,
            new.content_hash,  # a manifest's oid is the version's content hash
            new.num_rows,
            new.num_files,
            new.size_bytes,
            _json(new.schema),
            _json(new.profile),
            _json(new.step),
            None,
            new.message,
            now,
            actor,
        ),
    )
    version_id = cursor.lastrowid
    assert version_id is not None
    parents = [] if new.parent_id is None else [new.parent_id]
    if parents:
        conn.execute(
            "INSERT INTO version_parents (child_id, parent_id, role) VALUES (?, ?, ?)",
            (version_id, parents[0], "previous"),
        )
    _event(
        conn,
        actor,
        "dataset.version.created",
        f"{new.dataset}@{number}",
        {"content_hash": new.content_hash, "step": new.step.get("op"), "parents": parents},
    )
    return RecordedVersion(version_id, int(number))


def _event(
    conn: sqlite3.Connection, actor: str, kind: str, subject: str, payload: dict[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO events (at, actor, kind, subject, payload) VALUES (?, ?, ?, ?, ?)",
        (_stored_time(dt.datetime.now(dt.UTC)), actor, kind, subject, _json(payload)),
    )
