"""Labeling: projects, annotators, tasks, assignments, predictions, annotations, decisions.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _fk(
    column: str, target: str, *, nullable: bool = True, primary_key: bool = False
) -> sa.Column[int]:
    return sa.Column(
        column, sa.Integer, sa.ForeignKey(target), nullable=nullable, primary_key=primary_key
    )


def upgrade() -> None:
    op.create_table(
        "label_projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        _fk("dataset_version_id", "dataset_versions.id", nullable=False),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("overlap", sa.Integer, nullable=False),
        sa.Column("num_tasks", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "label_annotators",
        _fk("project_id", "label_projects.id", primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "label_tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("project_id", "label_projects.id", nullable=False),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("meta", sa.JSON),
        sa.UniqueConstraint("project_id", "key", name="uq_label_tasks_key"),
    )
    op.create_table(
        "label_assignments",
        _fk("task_id", "label_tasks.id", primary_key=True),
        sa.Column("annotator", sa.String(200), primary_key=True),
        _fk("project_id", "label_projects.id", nullable=False),
        sa.Column("assigned_at", TZ, nullable=False),
    )
    op.create_index(
        "ix_label_assignments_project", "label_assignments", ["project_id", "annotator"]
    )
    op.create_table(
        "label_predictions",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("project_id", "label_projects.id", nullable=False),
        _fk("task_id", "label_tasks.id", nullable=False),
        sa.Column("model", sa.String(400), nullable=False),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("meta", sa.JSON),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_label_predictions_project", "label_predictions", ["project_id", "task_id"])
    op.create_table(
        "label_annotations",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("project_id", "label_projects.id", nullable=False),
        _fk("task_id", "label_tasks.id", nullable=False),
        sa.Column("annotator", sa.String(200), nullable=False),
        sa.Column("value", sa.JSON, nullable=False),
        _fk("prediction_id", "label_predictions.id"),
        sa.Column("meta", sa.JSON),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("replaced_at", TZ),
    )
    op.create_index("ix_label_annotations_project", "label_annotations", ["project_id", "task_id"])
    op.create_table(
        "label_decisions",
        _fk("task_id", "label_tasks.id", primary_key=True),
        _fk("project_id", "label_projects.id", nullable=False),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_label_decisions_project", "label_decisions", ["project_id"])


def downgrade() -> None:
    for table in (
        "label_decisions",
        "label_annotations",
        "label_predictions",
        "label_assignments",
        "label_tasks",
        "label_annotators",
        "label_projects",
    ):
        op.drop_table(table)
