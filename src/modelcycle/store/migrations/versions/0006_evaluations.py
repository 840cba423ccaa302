"""Evaluations: a model version's metrics, plots and slices on a dataset version.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False
        ),
        sa.Column(
            "dataset_version_id", sa.Integer, sa.ForeignKey("dataset_versions.id"), nullable=False
        ),
        sa.Column("options_key", sa.String(64), nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("num_rows", sa.BigInteger, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("result_oid", sa.String(128), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint(
            "model_version_id", "dataset_version_id", "options_key", name="uq_evaluations_key"
        ),
    )


def downgrade() -> None:
    op.drop_table("evaluations")
