"""Tracking: experiments, runs, params, tags, metric points, latest metrics, inputs, artifacts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _run_fk(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "run_id",
        sa.String(32),
        sa.ForeignKey("runs.id"),
        nullable=False,
        primary_key=primary_key,
    )


def _point_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("is_nan", sa.Boolean, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger),
        sa.Column("parent_id", sa.String(32)),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("environment", sa.JSON),
        sa.Column("deleted_at", TZ),
    )
    op.create_index("ix_runs_experiment", "runs", ["experiment_id", "start_time"])
    op.create_index("ix_runs_parent", "runs", ["parent_id"])
    for name in ("run_params", "run_tags"):
        op.create_table(
            name,
            _run_fk(primary_key=True),
            sa.Column("key", sa.String(250), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
    op.create_table(
        "run_metrics",
        _run_fk(),
        sa.Column("key", sa.String(250), nullable=False),
        *_point_columns(),
    )
    op.create_index("ix_run_metrics_series", "run_metrics", ["run_id", "key", "step", "timestamp"])
    op.create_table(
        "run_latest_metrics",
        _run_fk(primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        *_point_columns(),
    )
    op.create_index("ix_run_latest_metrics_key", "run_latest_metrics", ["key", "value"])
    op.create_table(
        "run_inputs",
        _run_fk(primary_key=True),
        sa.Column(
            "dataset_version_id",
            sa.Integer,
            sa.ForeignKey("dataset_versions.id"),
            primary_key=True,
        ),
        sa.Column("role", sa.String(64), nullable=False),
    )
    op.create_index("ix_run_inputs_version", "run_inputs", ["dataset_version_id"])
    op.create_table(
        "run_artifacts",
        _run_fk(primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("oid", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "run_artifacts",
        "run_inputs",
        "run_latest_metrics",
        "run_metrics",
        "run_tags",
        "run_params",
        "runs",
        "experiments",
    ):
        op.drop_table(table)
