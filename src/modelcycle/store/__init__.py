"""Metadata storage: SQLAlchemy Core tables, Alembic migrations, record types
(`modelcycle.store.metadata`), and stdlib-only quick reads (`modelcycle.store.quickread`).

Nothing is imported here, so the quick CLI commands can use ``quickread`` without
paying for SQLAlchemy."""
