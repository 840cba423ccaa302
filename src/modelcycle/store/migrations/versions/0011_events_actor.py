"""An index for reading the audit log by actor (the audit page's and ``events --actor``
filter), newest first: without it, an actor with few changes among millions of events
means reading the whole table.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_actor_at", "events", ["actor", "at"])


def downgrade() -> None:
    op.drop_index("ix_events_actor_at", table_name="events")
