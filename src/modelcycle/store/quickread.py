"""Read-only lookups on a SQLite store through the standard library's sqlite3.

The quick CLI commands use these so that they need neither SQLAlchemy nor Alembic at
start-up (their imports alone cost more than the whole command). Only what the schema
of HEAD_REVISION guarantees is read; any doubt returns None and the caller takes the
ordinary path.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from modelcycle.store.engine_constants import HEAD_REVISION


def latest_manifest(db_path: Path, dataset: str) -> tuple[str, str, str] | None:
    """(ref, kind, manifest oid) of the latest live version of ``dataset``, or None."""
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
        row = conn.execute(
            "SELECT v.version, v.kind, v.manifest_oid FROM dataset_versions v "
            "JOIN datasets d ON d.id = v.dataset_id "
            "WHERE d.name = ? AND v.deleted_at IS NULL ORDER BY v.version DESC LIMIT 1",
            (dataset,),
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    return f"{dataset}@{row[0]}", str(row[1]), str(row[2])
