"""Deployments and their history, prediction log segments and feedback.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("sticky_header", sa.String(200)),
        sa.Column("routes", sa.JSON, nullable=False),
        sa.Column("shadows", sa.JSON, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("deleted_at", TZ),
    )
    op.create_table(
        "deployment_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id"), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index(
        "ix_deployment_changes_deployment", "deployment_changes", ["deployment_id", "generation"]
    )
    op.create_table(
        "prediction_segments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deployment", sa.String(200)),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("min_ts", TZ, nullable=False),
        sa.Column("max_ts", TZ, nullable=False),
        sa.Column("num_rows", sa.BigInteger, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("oid", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index(
        "ix_prediction_segments_deployment", "prediction_segments", ["deployment", "max_ts"]
    )
    op.create_index(
        "ix_prediction_segments_model", "prediction_segments", ["model", "version", "max_ts"]
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("value", sa.JSON),
        sa.Column("ts", TZ),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("received_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_feedback_request", "feedback", ["request_id", "id"])
    op.create_index("ix_feedback_received", "feedback", ["received_at"])


def downgrade() -> None:
    for table in ("feedback", "prediction_segments", "deployment_changes", "deployments"):
        op.drop_table(table)
