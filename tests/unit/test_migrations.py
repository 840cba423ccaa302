"""The migrations build exactly the tables `modelcycle.store.schema` describes."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from modelcycle.store import schema
from modelcycle.store.engine import ensure_schema, make_engine
from modelcycle.store.engine_constants import HEAD_REVISION


def test_migrated_database_matches_the_schema_module(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    made = make_engine(url)
    ensure_schema(made)  # creates and migrates to head
    made.dispose()
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert context.get_current_revision() == HEAD_REVISION
        diff = compare_metadata(context, schema.metadata)
    engine.dispose()
    assert diff == [], "\n".join(map(str, diff))
