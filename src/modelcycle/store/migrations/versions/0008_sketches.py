"""Dataset sketches: per-column summaries of a dataset version, computed once.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_sketches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "dataset_version_id", sa.Integer, sa.ForeignKey("dataset_versions.id"), nullable=False
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("options_key", sa.String(64), nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("sketch_oid", sa.String(128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "dataset_version_id", "kind", "options_key", name="uq_dataset_sketches_key"
        ),
    )


def downgrade() -> None:
    op.drop_table("dataset_sketches")
