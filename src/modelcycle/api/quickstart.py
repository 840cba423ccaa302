"""``modelcycle quickstart``: the lifecycle, end to end, on a bundled dataset.

It writes scikit-learn's breast-cancer data as a CSV with deliberate dirt (duplicate
rows, missing values, impossible outliers), then adds, profiles, validates, cleans,
re-validates and splits it, runs a labeling round, trains and tunes models, registers
and evaluates them, gates them into production, traces the production model's lineage
back to the raw file, and diffs and checks the stores, printing what each step did.
``say`` receives console markup (``[bold]…[/bold]``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelcycle.api.workspace import Workspace
from modelcycle.core.config import ENV_CACHE, ENV_TOKEN, ENV_URL, ENV_WORKSPACE
from modelcycle.core.errors import ConflictError
from modelcycle.registry.lineage import model_lineage_lines

# Datasets the walk creates; a server that holds any of them is not walked again.
QUICKSTART_NAMES = ("cancer", "cancer-train", "cancer-validation", "cancer-test", "cancer-labeled")

RECIPE = """\
# Cleaning recipe for the quickstart's raw data.
steps:
  - drop_duplicates: {}
  - fill_nulls: {columns: [mean_radius, mean_texture], strategy: median}
  - drop_outliers: {columns: [mean_area], method: zscore, threshold: 4}
  - validate: {file: rules.yaml}
"""

RULES = """\
rules:
  - {column: mean_radius, not_null: true}
  - {column: mean_texture, not_null: true}
  - {column: mean_area, range: {min: 0, max: 3000}}
  - {column: target, allowed: [0, 1]}
  - {column: id, unique: true}
  - {row_count: {min: 500}}
"""


def write_dirty_csv(path: Path, seed: int = 0) -> dict[str, int]:
    """The breast-cancer table with injected dirt; returns how much of each kind."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.insert(0, "id", range(1, len(frame) + 1))
    rng = np.random.default_rng(seed)
    n_null, n_out, n_dup = 12, 4, 15
    frame.loc[rng.choice(len(frame), n_null, replace=False), "mean_radius"] = np.nan
    frame.loc[rng.choice(len(frame), n_null // 2, replace=False), "mean_texture"] = np.nan
    frame.loc[rng.choice(len(frame), n_out, replace=False), "mean_area"] = 25_000.0
    dirty = frame.sample(frac=1.0, random_state=seed)
    dirty = pd.concat([dirty, dirty.iloc[:n_dup]])  # exact duplicate rows
    dirty.to_csv(path, index=False)
    return {
        "rows": len(dirty),
        "nulls": n_null + n_null // 2,
        "outliers": n_out,
        "duplicates": n_dup,
    }


def run_quickstart(
    path: Path | None = None,
    say: Callable[..., Any] = print,
    *,
    url: str | None = None,
    token: str | None = None,
) -> Path:
    """Walk the lifecycle in a new workspace at ``path`` (default: a temporary folder);
    with ``url``, against the platform server there instead (``path`` then holds only
    the walk's files and the client's cache)."""
    root = Path(path) if path else Path(tempfile.mkdtemp(prefix="modelcycle-quickstart-"))
    root.mkdir(parents=True, exist_ok=True)
    if url:
        ws = Workspace.connect(url, token=token, cache=root)
        taken = [n for n in QUICKSTART_NAMES if ws.datasets.latest(n) is not None]
        if taken or ws.labels.labels.get_project("diagnosis") is not None:
            ws.close()
            raise ConflictError(
                f"the server at {url} already holds the quickstart's datasets "
                f"({', '.join(taken) or 'labeling project diagnosis'})",
                hint="walk the quickstart against a fresh server (its names are fixed)",
            )
    else:
        ws = Workspace.create(root, exist_ok=True)
    try:
        return _walk(ws, root, say)
    finally:
        ws.close()


def _walk(ws: Workspace, root: Path, say: Callable[..., Any]) -> Path:
    def step(n: int, text: str) -> None:
        say(f"\n[bold]{n}. {text}[/bold]")

    if ws.remote is not None:
        say(
            f"Server: {ws.remote.connection.url}  (as {ws.actor}, role {ws.remote.role}); "
            f"files and cache in {root}"
        )
    else:
        say(f"Workspace: {root}  (metadata: SQLite, blobs: {ws.config.blobs_url})")
    raw = root / "raw" / "breast_cancer.csv"
    raw.parent.mkdir(exist_ok=True)
    dirt = write_dirty_csv(raw)
    (root / "clean.yaml").write_text(RECIPE)
    (root / "rules.yaml").write_text(RULES)

    step(1, "Add the raw CSV as a versioned dataset")
    added = ws.datasets.add("cancer", raw, message="raw export")
    v1 = added.version
    say(
        f"   {v1.ref}: {v1.num_rows} rows x {len(v1.schema or [])} columns, hash {v1.content_hash[:12]} "
        f"(injected: {dirt['duplicates']} duplicate rows, {dirt['nulls']} missing values, "
        f"{dirt['outliers']} outliers)"
    )

    step(2, "Profile (computed at add time)")
    cols = (v1.profile or {}).get("columns", {})
    for name in ("mean_radius", "mean_texture", "mean_area", "target"):
        c = cols[name]
        say(
            f"   {name:13s} nulls={c['nulls']:<3d} min={c['min']:<8.4g} mean={c['mean']:<8.4g} max={c['max']:.4g}"
        )

    step(3, "Validate the raw data against rules.yaml (expected to fail)")
    report = ws.datasets.validate(v1.ref, root / "rules.yaml")
    for f in report.failures:
        say(f"   FAIL rule {f['rule']} ({f['check']} {f['column'] or ''}): {f['message']}")

    step(4, "Clean it with the recipe clean.yaml")
    cleaned = ws.datasets.apply(v1.ref, root / "clean.yaml", message="cleaned").version
    for s in cleaned.step["steps"]:
        say(f"   {s['name']:15s} {s['rows_in']} -> {s['rows_out']} rows")
    say(f"   -> {cleaned.ref}, recipe hash {cleaned.step['recipe_hash'][:12]}")
    again = ws.datasets.apply(v1.ref, root / "clean.yaml")
    say(f"   applying the same recipe again returns {again.version.ref} without recomputing")

    step(5, "Validate the cleaned version")
    report = ws.datasets.validate(cleaned.ref, root / "rules.yaml")
    say(f"   {report.ref}: {'all rules pass' if report.ok else f'{len(report.failures)} failures'}")

    step(6, "Split 70/15/15, stratified by target, seed 0")
    parts = ws.datasets.split(cleaned.ref, "0.7,0.15,0.15", seed=0, stratify="target")
    for p in parts:
        say(f"   {p.step['part']:>10}: {p.ref} ({p.num_rows} rows)")

    step(7, "Label it: two annotators, a model's suggestions, agreement, likely errors")
    _label(ws, cleaned.ref, say)

    step(8, "Train a model on the split, then tune another with Optuna")
    runs = _train(ws, root, parts[0].ref, parts[1].ref, say)

    step(9, "Register both, evaluate them on the test split, gate and promote")
    production = _release(ws, root, runs, parts[2].ref, say)

    step(10, f"Lineage of {production}: back to the raw file")
    for line in model_lineage_lines(ws.models.lineage(production)):
        say("   " + line.replace("[", "\\["))  # `say` takes console markup

    step(11, "Serve the champion on 127.0.0.1, send traffic, read its metrics")
    _serve(ws, root, parts[2].ref, say)

    step(12, "Close the loop: drifted traffic -> alert -> retrain -> gate -> canary -> promote")
    final = _loop(ws, root, parts[0].ref, parts[2].ref, say)

    step(13, f"Lineage of the final champion, {final}")
    for line in model_lineage_lines(ws.models.lineage(final)):
        say("   " + line.replace("[", "\\["))

    step(14, "Diff raw -> cleaned")
    d = ws.datasets.diff(v1.ref, cleaned.ref, key="id")
    r = d["rows"]
    say(
        f"   rows by id: {r['from_count']} -> {r['to_count']}; removed {r['removed']}, changed {r['changed']}"
    )
    for c in d["columns"][:3]:
        say(
            f"   {c['column']}: "
            + ", ".join(
                f"{k} {v['from']:.4g}->{v['to']:.4g}"
                for k, v in c.items()
                if k in ("null_fraction", "mean", "max")
            )
        )

    step(15, "Check the stores")
    if ws.remote is not None:
        events = ws.events(limit=1000)
        mine = sum(e.actor == ws.actor for e in events)
        say(
            f"   the server recorded {mine} of its last {len(events)} events under {ws.actor}; "
            "`modelcycle fsck` runs where the server's stores are"
        )
        say(
            f"\nDone. Explore it in the web UI at {ws.remote.connection.url} "
            "(datasets, labeling, runs, models, deployments, monitoring), or with "
            f"MODELCYCLE_URL={ws.remote.connection.url} modelcycle model history cancer"
        )
        return root
    fsck = ws.fsck()
    say(
        f"   fsck: {fsck.versions} versions, {fsck.blobs_checked} blobs verified, "
        f"{'no problems' if fsck.ok else f'{len(fsck.problems)} problems'}"
    )
    say(
        f"\nDone. Explore it: cd {root} && modelcycle server, then open the web UI at "
        "http://127.0.0.1:8080 (datasets, labeling, runs, models, deployments, monitoring); "
        "or modelcycle maintenance show 1, modelcycle monitor show cancer-drift, "
        "modelcycle model history cancer"
    )
    return root


TRAIN_SPEC = """\
# A tracked training run: cross-validated on the train split, scored on validation.
experiment: cancer
name: random-forest
data: {{train: {train}, validation: {validation}}}
target: target
exclude: [id]
model:
  estimator: random_forest
  params: {{n_estimators: 50}}
metrics: [accuracy, f1, roc_auc]
cv: 5
seed: 0
"""

TUNE_SPEC = """\
# The same data, extra trees, and 8 Optuna trials (each a child run, pruned when poor).
experiment: cancer
name: trees-search
data: {{train: {train}, validation: {validation}}}
target: target
exclude: [id]
model: {{estimator: extra_trees}}
metrics: [accuracy, roc_auc]
cv: 3
seed: 0
search:
  trials: 8
  metric: roc_auc
  space:
    n_estimators: {{int: [20, 80]}}
    max_depth: {{int: [2, 12]}}
    max_features: {{choice: [sqrt, log2]}}
"""


def _train(
    ws: Workspace, root: Path, train: str, validation: str, say: Callable[..., Any]
) -> tuple[str, str]:
    (root / "train.yaml").write_text(TRAIN_SPEC.format(train=train, validation=validation))
    (root / "tune.yaml").write_text(TUNE_SPEC.format(train=train, validation=validation))
    rf = ws.training.train(root / "train.yaml")
    m = rf.metrics
    say(
        f"   train.yaml -> run {rf.run_id[:8]}: cv accuracy {m['cv_accuracy_mean']:.3f} "
        f"± {m['cv_accuracy_std']:.3f}, validation roc_auc {m['val_roc_auc']:.3f}; "
        "model logged with its signature"
    )
    tuned = ws.training.train(root / "tune.yaml")
    best = ws.runs.get(tuned.run_id)
    params = ", ".join(
        f"{k.removeprefix('best.')}={v}"
        for k, v in sorted(best.params.items())
        if k.startswith("best.")
    )
    say(
        f"   tune.yaml -> run {tuned.run_id[:8]} with {len(tuned.children)} trial runs; "
        f"best cv roc_auc {best.metrics['best_roc_auc']:.3f} ({params}); "
        f"validation roc_auc {tuned.metrics['val_roc_auc']:.3f}"
    )
    say(
        "   `modelcycle run list -e cancer` lists them; `modelcycle run compare` sets them side by side"
    )
    return rf.run_id, tuned.run_id


GATE = """\
# What a model must show on the test split before it may serve.
thresholds:
  roc_auc: {min: 0.95}
  accuracy: {min: 0.9}
champion:            # against the version in production, if there is one
  roc_auc: {min_absolute_change: 0.0}
"""


def _release(
    ws: Workspace, root: Path, runs: tuple[str, str], test: str, say: Callable[..., Any]
) -> str:
    """Register both runs' models, evaluate, gate each for production; returns the ref
    in production at the end."""
    from modelcycle.core.errors import GateRefused

    (root / "gate.yaml").write_text(GATE)
    for run_id in runs:
        v = ws.models.register(run_id, "cancer")
        ev = ws.evaluate(v.ref, test)
        m = ev.metrics
        report = ws.evaluations.report(ev, root / "reports" / f"{v.model}-{v.version}.html")
        say(
            f"   {v.ref} (run {run_id[:8]}) on {test}: roc_auc {m['roc_auc']:.4f}, "
            f"accuracy {m['accuracy']:.4f}, log_loss {m['log_loss']:.4f}; "
            f"report {report.relative_to(root)}"
        )
        try:
            moved = ws.evaluations.promote(
                v.ref, "production", gate=root / "gate.yaml", data=test, reason="quickstart"
            )
        except GateRefused as e:
            failed = [c for c in e.details["verdict"]["conditions"] if not c["passed"]]
            say(
                f"   gate.yaml refused {v.ref}: "
                + "; ".join(f"{c['requirement']} ({c['observed']})" for c in failed)
                + " -> back to tuning"
            )
            continue
        champion = f" against {moved['gate']['champion']}" if moved["gate"]["champion"] else ""
        say(f"   gate.yaml passed{champion}: {v.ref} -> production")
        ws.models.set_alias("cancer", "champion", v.version, reason="passed the gate")
    held = [v for v in ws.models.versions("cancer") if v.stage == "production"]
    if not held:
        raise AssertionError("no version passed the quickstart gate")
    say("   `modelcycle model history cancer` shows who moved what, when and why")
    return held[0].ref


def _label(ws: Workspace, ref: str, say: Callable[..., Any]) -> None:
    """Simulated annotators relabel the diagnosis; one of them is sloppy on purpose."""
    import numpy as np

    names = {0: "malignant", 1: "benign"}
    df = ws.datasets.load(ref)
    truth = [names[int(t)] for t in df["target"]]
    project = ws.labels.create(
        "diagnosis",
        ref,
        {"kind": "classification", "labels": ["malignant", "benign"]},
        overlap=2,
    )
    ws.labels.assign("diagnosis", ["ana", "ben"])
    say(f"   project {project.name}: {project.record.num_tasks} tasks over {ref}, overlap 2")

    def radius_rule(rows: Any) -> list[tuple[str, float]]:
        return [("malignant", 0.8) if r > 15 else ("benign", 0.7) for r in rows["mean_radius"]]

    n = ws.labels.predict("diagnosis", radius_rule, model_name="radius-rule")
    rng = np.random.default_rng(1)
    picks = rng.choice(len(truth), len(truth) // 20 + 12, replace=False).tolist()
    sloppy, shared = set(picks[12:]), set(picks[:12])  # ben's slips; both wrong
    flip = {"malignant": "benign", "benign": "malignant"}
    records = [(str(i), "ana", flip[t] if i in shared else t) for i, t in enumerate(truth)]
    records += [
        (str(i), "ben", flip[t] if i in sloppy | shared else t) for i, t in enumerate(truth)
    ]
    ws.labels.annotate_many("diagnosis", records)
    status = ws.labels.status("diagnosis")
    say(
        f"   {n} model suggestions; {status['labeled']} tasks labeled twice, "
        f"{status['conflicts']} in conflict (ben flipped {len(sloppy)} on purpose)"
    )
    report = ws.labels.agreement("diagnosis")
    say(f"   Cohen's kappa ana/ben: {report['overall']['cohen_kappa_mean']:.3f}")
    for key in sorted(sloppy)[:3]:
        ws.labels.decide("diagnosis", str(key), truth[key], reviewer="lead")
    say("   a reviewer settles 3 conflicts; the rest keep no label in the export")
    found = ws.labels.issues("diagnosis", exclude=["id", "target"])
    caught = len({int(f["task"]) for f in found} & shared)
    say(
        f"   label issues: {len(found)} rows whose label looks wrong, {caught} of the "
        f"{len(shared)} both annotators got wrong; top: "
        + ", ".join(f"row {f['task']} ({f['given']} -> {f['suggested']}?)" for f in found[:3])
    )
    labeled = ws.labels.export_to_dataset("diagnosis", "cancer-labeled", message="reviewed")
    say(
        f"   -> {labeled.ref}: the data plus a `label` column, lineage to {ref} "
        f"and project {project.name}"
    )


@contextlib.contextmanager
def _server(ws: Workspace, args: list[str], name: str) -> Iterator[str]:
    """A `modelcycle serve ARGS` process for ``ws`` on a free local port; yields its base
    URL and stops it (SIGTERM, by its PID) on exit."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    root = ws.root
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (ENV_URL, ENV_TOKEN, ENV_CACHE, ENV_WORKSPACE)
    }
    if ws.remote is not None:
        env[ENV_URL] = ws.remote.connection.url
        env[ENV_CACHE] = str(root)  # shares the verified blobs already fetched
        if ws.remote.token:
            env[ENV_TOKEN] = ws.remote.token
    else:
        env[ENV_WORKSPACE] = str(root)
    log = (root / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "modelcycle.serving", *args),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _call(base, "/v2/health/ready")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the model server did not start; see {root / (name + '.log')}"
                    ) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _call(base: str, path: str, body: Any = None) -> Any:
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return raw.decode() if path == "/metrics" else json.loads(raw)


def _serve(ws: Workspace, root: Path, test: str, say: Callable[..., Any]) -> None:
    """Start `modelcycle serve cancer@champion` as its own process on a free local port,
    send one-row requests over MLflow's and the v2 protocol, read /metrics, stop it."""
    import time

    with _server(ws, ["cancer@champion"], "serve") as base:
        say(f"   modelcycle serve cancer@champion --port {base.rsplit(':', 1)[1]}: ready")
        frame = ws.datasets.to_pandas(test)
        model = ws.models.load("cancer@champion")
        features = [s.name for s in model.signature.inputs] if model.signature else []
        rows = frame[features].to_dict(orient="records")
        expected = [int(v) for v in model.predict(frame[features])]
        started = time.perf_counter()
        got = [
            int(_call(base, "/invocations", {"dataframe_records": [row]})["predictions"][0])
            for row in rows
        ]
        seconds = time.perf_counter() - started
        v2 = _call(
            base,
            "/v2/models/cancer/infer",
            {
                "inputs": [
                    {
                        "name": name,
                        "shape": [1],
                        "datatype": "FP64",
                        "data": [float(rows[0][name])],
                    }
                    for name in features
                ]
            },
        )
        same = sum(a == b for a, b in zip(got, expected, strict=True))
        say(
            f"   {len(rows)} one-row requests to /invocations in {seconds:.2f} s "
            f"({len(rows) / seconds:,.0f}/s on one connection); {same}/{len(rows)} match "
            f"the model in-process; /v2/models/cancer/infer -> "
            f"{v2['outputs'][0]['data'][0]} (version {v2.get('model_version')})"
        )
        shown = 0
        for line in _call(base, "/metrics").splitlines():
            if (
                line.startswith(
                    ("modelcycle_requests_total{", "modelcycle_request_duration_seconds_count{")
                )
                and shown < 4
            ):
                say(f"   {line}")
                shown += 1
    say("   stopped; prediction logs: `modelcycle deploy predictions cancer`")


LOOP_GATE = """\
# The gate a retrained candidate must pass on the pinned test split.
thresholds:
  roc_auc: {min: 0.9}
"""

# Columns the injected drift scales (a third of the features): bigger, rougher tumours.
DRIFTED = (
    "mean_radius",
    "mean_perimeter",
    "mean_area",
    "worst_radius",
    "worst_perimeter",
    "worst_area",
    "mean_texture",
    "worst_texture",
    "radius_error",
    "area_error",
    "perimeter_error",
    "mean_concavity",
)


def _loop(ws: Workspace, root: Path, train: str, test: str, say: Callable[..., Any]) -> str:
    """Serve a deployment, send drifted traffic with its ground truth, let the monitor
    alert and the maintenance policy retrain, gate, canary and promote; returns the
    final champion."""
    import threading
    import time

    (root / "loop-gate.yaml").write_text(LOOP_GATE)
    ws.deployments.create("cancer-live", "cancer@champion", reason="quickstart")
    champion = ws.models.resolve("cancer@champion").ref
    frame = ws.datasets.to_pandas(train)
    features = [c for c in frame.columns if c not in ("id", "target")]
    drifted = frame.sample(n=400, replace=True, random_state=1).reset_index(drop=True)
    for column in DRIFTED:
        drifted[column] = drifted[column] * 1.3
    args = ["--deployment", "cancer-live", "--poll-interval-s", "0.2"]
    with _server(ws, args, "serve-loop") as base:
        say(f"   modelcycle serve --deployment cancer-live: {champion} on {base}")
        ws.monitors.create(
            "cancer-drift",
            deployment="cancer-live",
            reference=train,
            checks=["drift", "operations"],
            rules=["drift_share > 0.3", "p99_latency_seconds > 0.5"],
            window="1h",
            metrics_url=base + "/metrics",
            channels=["file=alerts.jsonl"],
        )
        ws.maintenance.set_policy(
            "cancer-live",
            {
                "trigger": {"monitors": ["cancer-drift"], "rules": ["drift_share > 0.3"]},
                "retrain": {"train": "train.yaml", "feedback": True, "feedback_window": "1h"},
                "evaluate": {"data": test, "gate": "loop-gate.yaml"},
                "canary": {
                    "weight": 30,
                    "min_requests": 40,
                    "interval": "1s",
                    "max_duration": "2m",
                    "p99_factor": 3.0,
                    "metrics_url": base + "/metrics",
                },
                "min_interval": "1m",
            },
        )
        say(
            "   monitor cancer-drift: drift_share > 0.3 against "
            f"{train}; policy: retrain train.yaml + feedback, gate loop-gate.yaml, "
            "canary 30% until 40 requests"
        )
        stop = threading.Event()
        sent = [0]  # requests answered
        versions: dict[int, int] = {}

        def traffic() -> None:
            labels = []
            while not stop.is_set():
                i = sent[0]
                row = drifted.iloc[i % len(drifted)]
                out = _call(
                    base,
                    "/v1/models/cancer-live/predict",
                    {"records": [{c: float(row[c]) for c in features}], "probabilities": True},
                )
                versions[out["version"]] = versions.get(out["version"], 0) + 1
                labels.append({"request_id": out["request_id"], "label": int(row["target"])})
                if len(labels) == 20:
                    _call(base, "/v1/feedback", labels)
                    labels = []
                sent[0] = i + 1
                time.sleep(0.005)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        try:
            say(
                f"   traffic: one-row requests with {len(DRIFTED)} columns scaled x1.3, and "
                "their labels sent back to /v1/feedback"
            )
            deadline = time.monotonic() + 60
            while True:  # the prediction log is written every few seconds
                time.sleep(1.0)
                run = ws.monitors.run("cancer-drift")
                if run.result.rows >= 100 or time.monotonic() > deadline:
                    break
            v = run.result.values
            say(
                f"   monitor run: {run.result.rows} rows, drift_share {v.get('drift_share', 0):.2f} "
                f"({int(v.get('drifted_columns', 0))} of {len(features)} columns), p99 "
                f"{(v.get('p99_latency_seconds') or 0) * 1000:.1f} ms"
            )
            for alert in run.fired:
                say(f"   ALERT {alert.id}: {alert.message} -> alerts.jsonl, event log")
            loop = ws.maintenance.tick()
            if not loop:  # a server's scheduler may have started it first
                loop = ws.maintenance.list(deployment="cancer-live", limit=1)
            if not loop:
                raise RuntimeError("the drift alert started no maintenance run")
            current = loop[0]
            deadline = time.monotonic() + 120
            while current.running and time.monotonic() < deadline:
                time.sleep(1.0)
                current = ws.maintenance.advance(current)
        finally:
            stop.set()
            thread.join(timeout=30)
        for step in current.steps:
            say(f"   maintenance {current.id}: {_step_text(step)}")
        say(f"   -> {current.state}: {current.reason}")
        say(
            f"   {sent[0]} requests answered by "
            + ", ".join(f"cancer@{k}: {n}" for k, n in sorted(versions.items()))
            + "; none failed"
        )
    return ws.models.resolve("cancer@champion").ref


def _step_text(step: dict[str, Any]) -> str:
    kind = step["step"]
    if kind == "retrained":
        return (
            f"retrained -> {step['candidate']} on {step['data']} "
            f"(+{step['feedback_rows']} feedback-labelled rows)"
        )
    if kind == "gated":
        return "gate passed" if step.get("passed") else "gate REFUSED"
    if kind == "canary_started":
        return f"canary {step['candidate']} at {step['weight']:g}% beside {step['champion']}"
    if kind == "canary_check":
        verdict = "passed" if step.get("passed") else "FAILED"
        return (
            f"canary check {step['n']} {verdict} ({step['candidate_requests']} candidate requests)"
        )
    if kind == "promoted":
        return f"promoted {step['candidate']} to {step['alias']}"
    return f"{kind}: {step.get('reason', '')}"
