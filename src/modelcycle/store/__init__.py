"""Metadata storage: SQLAlchemy Core tables, Alembic migrations, record types
(`modelcycle.store.metadata`), and stdlib-only quick reads (`modelcycle.store.quickread`).

Nothing is imported here, so the quick CLI commands can use ``quickread`` without
paying for SQLAlchemy."""

# The metadata stores by name: each is the module ``modelcycle.store.NAME``, a store of
# a workspace (`Workspace.stores`) and what a remote workspace calls through
# ``/api/v1/rpc/NAME/…``.
STORE_NAMES = (
    "metadata",
    "runs",
    "registry",
    "deployments",
    "evaluations",
    "labels",
    "maintenance",
    "monitors",
    "pipelines",
    "sketches",
    "tokens",
)
