"""Pipelines: the last fingerprint and outputs of each stage, and a record of each run.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pipeline_stages",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("stage", sa.String(200), primary_key=True),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stages", sa.JSON, nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
    )
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline", "started_at"])


def downgrade() -> None:
    op.drop_table("pipeline_runs")
    op.drop_table("pipeline_stages")
