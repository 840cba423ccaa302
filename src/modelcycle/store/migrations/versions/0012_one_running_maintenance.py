"""At most one running maintenance run per model, enforced by the database: a partial
unique index on ``model`` over running runs. Two schedulers that start a run for the
same model at the same moment no longer both succeed (on PostgreSQL, ``SELECT … FOR
UPDATE`` of the last run locks nothing when there is none yet).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_RUNNING = sa.text("state = 'running'")


def upgrade() -> None:
    # A store that already holds two running runs of one model (the race this closes)
    # keeps the newest running and fails the others, saying why.
    op.execute(
        """
        UPDATE maintenance_runs SET state = 'failed',
            reason = 'another maintenance run of the model was running at the same time'
        WHERE state = 'running' AND id NOT IN (
            SELECT max(id) FROM maintenance_runs WHERE state = 'running' GROUP BY model
        )
        """
    )
    op.create_index(
        "ux_maintenance_runs_running",
        "maintenance_runs",
        ["model"],
        unique=True,
        sqlite_where=_RUNNING,
        postgresql_where=_RUNNING,
    )


def downgrade() -> None:
    op.drop_index("ux_maintenance_runs_running", table_name="maintenance_runs")
