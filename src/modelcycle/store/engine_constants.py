"""Facts about the schema that code without SQLAlchemy needs too."""

# The newest Alembic migration. A store already at this revision skips Alembic entirely.
HEAD_REVISION = "0013"
