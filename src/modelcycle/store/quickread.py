"""Read-only lookups on a SQLite store through the standard library's sqlite3.

The quick CLI commands use these so that they need neither SQLAlchemy nor Alembic at
start-up (their imports alone cost more than the whole command). Only what the schema
of HEAD_REVISION guarantees is read; any doubt returns None and the caller takes the
ordinary path.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

from modelcycle.store.engine_constants import HEAD_REVISION


class LatestVersion(NamedTuple):
    """The latest live version of a dataset."""

    id: int
    ref: str
    version: int
    kind: str
    content_hash: str
    manifest_oid: str


class DatasetHead(NamedTuple):
    """What a dataset is now: its kind (None when there is no such dataset) and its
    latest live version (None when it has none)."""

    kind: str | None
    latest: LatestVersion | None


def dataset_head(db_path: Path, dataset: str) -> DatasetHead | None:
    """The head of ``dataset``, or None when this module cannot tell."""
    if not db_path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if not revision or revision[0] != HEAD_REVISION:
            return None
        found = conn.execute("SELECT id, kind FROM datasets WHERE name = ?", (dataset,)).fetchone()
        if found is None:
            return DatasetHead(None, None)
        row = conn.execute(
            "SELECT id, version, kind, content_hash, manifest_oid FROM dataset_versions "
            "WHERE dataset_id = ? AND deleted_at IS NULL ORDER BY version DESC LIMIT 1",
            (found[0],),
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return DatasetHead(str(found[1]), None)
    version_id, number, kind, content_hash, manifest_oid = row
    latest = LatestVersion(
        int(version_id), f"{dataset}@{number}", int(number), kind, content_hash, manifest_oid
    )
    return DatasetHead(str(found[1]), latest)


def latest_manifest(db_path: Path, dataset: str) -> tuple[str, str, str] | None:
    """(ref, kind, manifest oid) of the latest live version of ``dataset``, or None."""
    head = dataset_head(db_path, dataset)
    if head is None or head.latest is None:
        return None
    return head.latest.ref, head.latest.kind, head.latest.manifest_oid
