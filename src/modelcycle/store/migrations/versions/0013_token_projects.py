"""Project scoping of API tokens: the name patterns a token is limited to.

``projects`` holds a JSON list of glob patterns (``["fraud-*"]``); NULL means the
token is not limited, which is what every token created before this revision is.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("projects", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("projects")
