"""Tables of the metadata store (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # "table" or "files"
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("hash_algorithm", String(16), nullable=False),
    Column("content_hash", String(128), nullable=False),
    Column("manifest_oid", String(128), nullable=False),
    Column("num_rows", BigInteger),
    Column("num_files", BigInteger),
    Column("size_bytes", BigInteger, nullable=False),
    Column("schema", JSON),
    Column("profile", JSON),
    Column("step", JSON, nullable=False),  # what made it: add / recipe / split / augment
    Column("cache_key", String(128)),
    Column("message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_number"),
    Index("ix_dataset_versions_content_hash", "content_hash"),
    Index("ix_dataset_versions_cache_key", "cache_key"),
)

version_parents = Table(
    "version_parents",
    metadata,
    Column("child_id", Integer, ForeignKey("dataset_versions.id"), primary_key=True),
    Column("parent_id", Integer, ForeignKey("dataset_versions.id"), primary_key=True),
    Column("role", String(32), nullable=False),
    Index("ix_version_parents_parent", "parent_id"),
)

dataset_tags = Table(
    "dataset_tags",
    metadata,
    Column("dataset_id", Integer, ForeignKey("datasets.id"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("version_id", Integer, ForeignKey("dataset_versions.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_events_at", "at"),
    Index("ix_events_actor_at", "actor", "at"),  # migration 0011: the audit page's filter
)

# -- labeling (migration 0002) -------------------------------------------------------------
label_projects = Table(
    "label_projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id"), nullable=False),
    Column("schema", JSON, nullable=False),
    Column("overlap", Integer, nullable=False),
    Column("num_tasks", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
)

label_annotators = Table(
    "label_annotators",
    metadata,
    Column("project_id", Integer, ForeignKey("label_projects.id"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

label_tasks = Table(
    "label_tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("label_projects.id"), nullable=False),
    Column("key", String(1000), nullable=False),
    Column("position", Integer, nullable=False),  # row number / index in the file manifest
    Column("meta", JSON),
    UniqueConstraint("project_id", "key", name="uq_label_tasks_key"),
)

label_assignments = Table(
    "label_assignments",
    metadata,
    Column("task_id", Integer, ForeignKey("label_tasks.id"), primary_key=True),
    Column("annotator", String(200), primary_key=True),
    Column("project_id", Integer, ForeignKey("label_projects.id"), nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    Index("ix_label_assignments_project", "project_id", "annotator"),
)

label_predictions = Table(
    "label_predictions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("label_projects.id"), nullable=False),
    Column("task_id", Integer, ForeignKey("label_tasks.id"), nullable=False),
    Column("model", String(400), nullable=False),
    Column("value", JSON, nullable=False),
    Column("score", Float),
    Column("meta", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_label_predictions_project", "project_id", "task_id"),
)

label_annotations = Table(
    "label_annotations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("label_projects.id"), nullable=False),
    Column("task_id", Integer, ForeignKey("label_tasks.id"), nullable=False),
    Column("annotator", String(200), nullable=False),
    Column("value", JSON, nullable=False),
    Column("prediction_id", Integer, ForeignKey("label_predictions.id")),
    Column("meta", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("replaced_at", DateTime(timezone=True)),  # set when an edit supersedes it
    Index("ix_label_annotations_project", "project_id", "task_id"),
)

label_decisions = Table(
    "label_decisions",
    metadata,
    Column("task_id", Integer, ForeignKey("label_tasks.id"), primary_key=True),
    Column("project_id", Integer, ForeignKey("label_projects.id"), nullable=False),
    Column("value", JSON, nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_label_decisions_project", "project_id"),
)

# -- tracking (migration 0003) -------------------------------------------------------------
experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # running / finished / failed / killed
    Column("start_time", BigInteger, nullable=False),  # ms since the epoch, as MLflow
    Column("end_time", BigInteger),
    Column("parent_id", String(32)),
    Column("user", String(200), nullable=False),
    Column("error", Text),
    Column("environment", JSON),
    Column("deleted_at", DateTime(timezone=True)),
    Index("ix_runs_experiment", "experiment_id", "start_time"),
    Index("ix_runs_parent", "parent_id"),
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

# Every logged point. No primary key: the same (key, step) may be logged twice, as in
# MLflow; readers order by step, then timestamp.
run_metrics = Table(
    "run_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float),  # NULL when is_nan (SQLite cannot store NaN)
    Column("is_nan", Boolean, nullable=False),
    Index("ix_run_metrics_series", "run_id", "key", "step", "timestamp"),
)

# The point with the highest step of each series, for listing and searching runs.
run_latest_metrics = Table(
    "run_latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float),
    Column("is_nan", Boolean, nullable=False),
    Index("ix_run_latest_metrics_key", "key", "value"),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id"), primary_key=True),
    Column("role", String(64), nullable=False),
    Index("ix_run_inputs_version", "dataset_version_id"),
)

run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("oid", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# -- pipelines (migration 0004) ------------------------------------------------------------
pipeline_stages = Table(
    "pipeline_stages",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("stage", String(200), primary_key=True),
    Column("fingerprint", String(128), nullable=False),
    Column("outputs", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # running / finished / failed
    Column("stages", JSON, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_pipeline_runs_pipeline", "pipeline", "started_at"),
)

# -- registry (migration 0005) -------------------------------------------------------------
models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id")),
    Column("source", String(1000)),  # the run's artifact folder it was registered from
    Column("manifest_oid", String(128), nullable=False),  # the package's files
    Column("flavor", String(64), nullable=False),
    Column("signature", JSON),
    Column("metrics", JSON),
    Column("needs_trust", JSON),
    Column("stage", String(16), nullable=False),  # registered/staging/production/archived/retired
    Column("description", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_number"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("alias", String(200), primary_key=True),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
)

# Every registry change, for `model history` ("what was in production at time T").
model_transitions = Table(
    "model_transitions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("version_id", Integer, ForeignKey("model_versions.id")),
    Column("kind", String(32), nullable=False),  # registered/stage/alias/alias_removed
    Column("alias", String(200)),
    Column("from_stage", String(16)),
    Column("to_stage", String(16)),
    Column("reason", Text),
    Column("forced", Boolean, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_model_transitions_model", "model_id", "at"),
)

# -- evaluations (migration 0006) ----------------------------------------------------------
# One row per (model version, dataset version, options): computed once, read many times.
# The full result (curves, importance, slices) is a JSON blob; the metrics are here too so
# listing and comparing never read blobs.
evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id"), nullable=False),
    Column("options_key", String(64), nullable=False),  # hash of target, slices, importance
    Column("options", JSON, nullable=False),
    Column("task", String(32), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("result_oid", String(128), nullable=False),
    Column("seconds", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint(
        "model_version_id", "dataset_version_id", "options_key", name="uq_evaluations_key"
    ),
)

# -- deployments (migration 0007) ----------------------------------------------------------
# A served name and its current routes. ``routes`` is [{"ref", "weight"}] with refs as the
# user wrote them ("churn@champion"): aliases are resolved when a route table is built, so
# a server sees an alias move without the deployment changing. ``generation`` counts
# changes; a deleted deployment keeps its row (and history) and may be created again.
deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("sticky_header", String(200)),
    Column("routes", JSON, nullable=False),
    Column("shadows", JSON, nullable=False),  # [ref, ...]
    Column("generation", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
)

# Every change of a deployment with its state before and after, for history and rollback.
deployment_changes = Table(
    "deployment_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("kind", String(32), nullable=False),  # created/route/shadow/rollback/deleted
    Column("before", JSON),  # {"routes", "shadows", "sticky_header"}; NULL when created
    Column("after", JSON, nullable=False),
    Column("reason", Text),
    Column("actor", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_deployment_changes_deployment", "deployment_id", "generation"),
)

# One Parquet blob of logged predictions of one model version. Names, not foreign keys:
# logs outlive deployments and may come from a server that serves a package folder.
prediction_segments = Table(
    "prediction_segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment", String(200)),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("min_ts", DateTime(timezone=True), nullable=False),
    Column("max_ts", DateTime(timezone=True), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("oid", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_prediction_segments_deployment", "deployment", "max_ts"),
    Index("ix_prediction_segments_model", "model", "version", "max_ts"),
)

# Ground truth for logged predictions: for row ``row_index`` of request ``request_id``
# (0 for a one-row request). Append-only: a row given feedback twice keeps both, and
# readers use the one received last.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", String(200), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("value", JSON),
    Column("ts", DateTime(timezone=True)),  # when the outcome happened, if the sender said
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("received_by", String(200), nullable=False),
    Index("ix_feedback_request", "request_id", "id"),
    Index("ix_feedback_received", "received_at"),
)

# -- dataset sketches (migration 0008) -----------------------------------------------------
# Summaries of a dataset version computed once and reused (e.g. the per-column sketches
# drift detection compares against); the sketch itself is a blob.
dataset_sketches = Table(
    "dataset_sketches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # "drift"
    Column("options_key", String(64), nullable=False),  # hash of the sketch's options
    Column("options", JSON, nullable=False),
    Column("sketch_oid", String(128), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dataset_version_id", "kind", "options_key", name="uq_dataset_sketches_key"),
)

# -- monitors and alerts (migration 0009) ------------------------------------------------
# A monitor watches one deployment's logged traffic against a reference dataset version
# on a schedule; its spec (checks, rules, channels, options) is JSON.
monitors = Table(
    "monitors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("deployment", String(200), nullable=False),
    Column("reference", String(300), nullable=False),  # a dataset ref, resolved: "name@N"
    Column("spec", JSON, nullable=False),
    Column("schedule_seconds", Float, nullable=False),
    Column("window_seconds", Float, nullable=False),
    Column("next_run_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    Index("ix_monitors_name", "name"),
)

# One run of a monitor: the figures rules are checked on (``values``: metric -> number or
# null), the rules it breached, and its full detail (drift per column, ...) as a blob.
monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("monitor_id", Integer, ForeignKey("monitors.id"), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # ok / breach / no_data / error
    Column("rows", BigInteger, nullable=False),
    Column("values", JSON, nullable=False),
    Column("breaches", JSON, nullable=False),  # rule texts breached by this result
    Column("detail_oid", String(128)),
    Column("snapshot", JSON),  # the serving metrics scraped, for the next window's deltas
    Column("error", Text),
    Index("ix_monitor_results_monitor", "monitor_id", "id"),
)

# An alert: a rule a monitor's results breached (debounced), with its evidence. Open
# while ``resolved_at`` is NULL; acknowledging keeps it open but silences nothing else.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("monitor_id", Integer, ForeignKey("monitors.id"), nullable=False),
    Column("result_id", Integer, ForeignKey("monitor_results.id"), nullable=False),
    Column("rule", String(300), nullable=False),
    Column("metric", String(200), nullable=False),
    Column("op", String(4), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("value", Float),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False),
    Column("last_result_id", Integer, nullable=False),
    Column("acked_at", DateTime(timezone=True)),
    Column("acked_by", String(200)),
    Column("ack_note", Text),
    Column("resolved_at", DateTime(timezone=True)),
    Index("ix_alerts_monitor", "monitor_id", "rule", "id"),
)

# -- the closed loop (migration 0009) --------------------------------------------------
# A deployment's maintenance policy: which alerts start a run, how to retrain, the gate,
# the canary and its checks (JSON). One live policy per deployment.
maintenance_policies = Table(
    "maintenance_policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment", String(200), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    Index("ix_maintenance_policies_deployment", "deployment"),
)

# One iteration of the loop: retrain -> evaluate -> gate -> canary -> promote or roll
# back, each step with its decision and reason. ``state`` is running until it ends.
maintenance_runs = Table(
    "maintenance_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("trigger", JSON, nullable=False),
    Column("policy", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # running/promoted/rolled_back/refused/failed
    Column("phase", String(16), nullable=False),  # the step running or last run
    Column("champion", String(300)),
    Column("candidate", String(300)),
    Column("steps", JSON, nullable=False),
    Column("data", JSON, nullable=False),
    Column("reason", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("started_by", String(200), nullable=False),
    # The process advancing the run, until when: one process at a time moves a run on.
    Column("lease_owner", String(200)),
    Column("lease_until", DateTime(timezone=True)),
    Index("ix_maintenance_runs_deployment", "deployment", "id"),
    # At most one running run per model, even when two schedulers start one at once
    # (migration 0012): the second insert fails instead of both running.
    Index(
        "ux_maintenance_runs_running",
        "model",
        unique=True,
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
)

# -- API tokens (migration 0010) -----------------------------------------------------------
# Only a token's SHA-256 is stored; the token itself is shown once, when created.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # reader / editor / admin
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),  # the first characters, to tell tokens apart
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    # The name patterns the token is limited to (migration 0013); NULL: not limited.
    Column("projects", JSON),
    Index("ix_api_tokens_name", "name"),
)
