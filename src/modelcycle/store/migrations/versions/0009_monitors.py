"""Monitors, their results and alerts; maintenance policies and runs (the closed loop).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# Columns of composite primary keys that 0002 created without NOT NULL (SQLite then lets
# them hold NULL; PostgreSQL never does).
_PK_COLUMNS = (
    ("label_annotators", "project_id"),
    ("label_assignments", "task_id"),
    ("label_decisions", "task_id"),
)


def upgrade() -> None:
    for table, column in _PK_COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, existing_type=sa.Integer, nullable=False)
    op.create_table(
        "monitors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(300), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("schedule_seconds", sa.Float, nullable=False),
        sa.Column("window_seconds", sa.Float, nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_monitors_name", "monitors", ["name"])
    op.create_table(
        "monitor_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("monitor_id", sa.Integer, sa.ForeignKey("monitors.id"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("breaches", sa.JSON, nullable=False),
        sa.Column("detail_oid", sa.String(128)),
        sa.Column("snapshot", sa.JSON),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_monitor_results_monitor", "monitor_results", ["monitor_id", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("monitor_id", sa.Integer, sa.ForeignKey("monitors.id"), nullable=False),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("monitor_results.id"), nullable=False),
        sa.Column("rule", sa.String(300), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("op", sa.String(4), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_result_id", sa.Integer, nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True)),
        sa.Column("acked_by", sa.String(200)),
        sa.Column("ack_note", sa.Text),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_alerts_monitor", "alerts", ["monitor_id", "rule", "id"])
    op.create_table(
        "maintenance_policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_maintenance_policies_deployment", "maintenance_policies", ["deployment"])
    op.create_table(
        "maintenance_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("trigger", sa.JSON, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("champion", sa.String(300)),
        sa.Column("candidate", sa.String(300)),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_maintenance_runs_deployment", "maintenance_runs", ["deployment", "id"])


def downgrade() -> None:
    for table, column in _PK_COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, existing_type=sa.Integer, nullable=True)
    op.drop_table("maintenance_runs")
    op.drop_table("maintenance_policies")
    op.drop_table("alerts")
    op.drop_table("monitor_results")
    op.drop_table("monitors")
