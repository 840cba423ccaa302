"""Evaluation stored per (model version, dataset version), gates, promotion and lineage."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from integration_support import run_cli, run_json
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelcycle as mc
from modelcycle.core.errors import GateRefused, InputDataError, UsageError

FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst area", "worst concavity"]
FEAT_COLS = [f.replace(" ", "_") for f in FEATURES]


def _data(ws: mc.Workspace, tmp_path: Path) -> tuple[str, str, pd.DataFrame]:
    """Train and test versions of a 5-feature breast-cancer table with a `region` column."""
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    frame = x[FEATURES].rename(columns=lambda c: c.replace(" ", "_"))
    frame["region"] = np.where(np.arange(len(frame)) % 3 == 0, "north", "south")
    frame["target"] = y
    frame.iloc[:400].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[400:].to_csv(tmp_path / "test.csv", index=False)
    train = ws.datasets.add("bc-train", tmp_path / "train.csv").version.ref
    test = ws.datasets.add("bc-test", tmp_path / "test.csv").version.ref
    return train, test, frame


def _register(ws: mc.Workspace, train: str, model: object) -> str:
    df = ws.datasets.to_pandas(train)
    cols = [c for c in df.columns if c not in ("region", "target")]
    model.fit(df[cols], df["target"])  # type: ignore[attr-defined]
    with ws.start_run("bc", tags={"task": "classification", "target": "target"}) as run:
        run.log_input(train, "train")
        v = run.log_model(model, "model", input_example=df[cols].head(3), register_as="bc")
    return str(v.ref)


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_metrics_equal_sklearn_and_are_stored_once(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    train, test, _ = _data(ws, tmp_path)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    ref = _register(ws, train, model)
    ev = ws.evaluate(ref, test, slices=["region"])
    assert not ev.cached and ev.result.task == "classification"

    df = ws.datasets.to_pandas(test)
    x, y = df[[c for c in df.columns if c not in ("region", "target")]], df["target"]
    pred, proba = model.predict(x), model.predict_proba(x)[:, 1]
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "f1_weighted": skm.f1_score(y, pred, average="weighted"),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba),
        "log_loss": skm.log_loss(y, model.predict_proba(x)),
        "brier": skm.brier_score_loss(y, proba),
    }
    for key, value in expected.items():
        assert ev.metrics[key] == pytest.approx(value, abs=1e-12), key
    north = next(s for s in ev.result.slices if s["value"] == "north")
    mask = (df["region"] == "north").to_numpy()
    assert north["n"] == int(mask.sum())
    assert north["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y[mask], pred[mask]))
    assert {i["feature"] for i in ev.result.importance} == set(x.columns)

    again = ws.evaluate(ref, test, slices=["region"])
    assert again.cached and again.row.id == ev.row.id and again.metrics == ev.metrics
    assert [e.id for e in ws.evaluations.list(ref)] == [ev.row.id]
    assert ws.fsck().ok  # the result blob is referenced and intact

    out = ws.evaluations.report(ev, tmp_path / "r" / "report.html")
    html = out.read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org", "")


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_evaluation_data_that_does_not_fit_the_signature(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    ws = workspace
    train, _, frame = _data(ws, tmp_path)
    ref = _register(ws, train, LogisticRegression(max_iter=2000))
    bad = frame.drop(columns=["worst_area"]).rename(columns={"mean_texture": "texture"})
    bad["mean_radius"] = "r" + bad["mean_radius"].astype(str)  # text, not numbers
    bad.to_csv(tmp_path / "bad.csv", index=False)
    bad_ref = ws.datasets.add("bad", tmp_path / "bad.csv").version.ref
    with pytest.raises(InputDataError) as e:
        ws.evaluate(ref, bad_ref)
    text = str(e.value)
    assert "missing column 'worst_area'" in text and "missing column 'mean_texture'" in text
    assert "'mean_radius' should be" in text and "texture" in text  # extra column named
    assert ws.evaluations.list(ref) == []
    with pytest.raises(InputDataError, match="no target column 'label'"):
        ws.evaluate(ref, bad_ref, target="label")


def test_gate_promote_force_rollback_lineage_cli(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    train, test, _ = _data(ws, tmp_path)
    good = _register(ws, train, make_pipeline(StandardScaler(), LogisticRegression()))
    weak = _register(ws, train, DummyClassifier(strategy="prior"))
    assert (good, weak) == ("bc@1", "bc@2")
    gate = tmp_path / "gate.yaml"
    gate.write_text(
        "thresholds: {roc_auc: {min: 0.9}}\nchampion: {roc_auc: {min_absolute_change: 0.0}}\n"
    )
    root = ws.root

    passed = run_json(
        "model", "promote", good, "--to", "production", "--gate", gate, "--data", test,
        "--json", cwd=root,
    )  # fmt: skip
    assert passed["promoted"] and passed["gate"]["passed"]
    before_refusal = dt.datetime.now(dt.UTC)

    refused = run_cli(
        "model", "promote", weak, "--to", "production", "--gate", gate, "--data", test,
        "--json", cwd=root, expect=6,
    )  # fmt: skip
    verdict = json.loads(refused.stdout)["gate"]
    assert not verdict["passed"] and verdict["champion"] == "bc@1"
    failed = {(c["kind"], c["metric"]) for c in verdict["failed"]}
    assert failed == {("threshold", "roc_auc"), ("champion", "roc_auc")}
    assert "the gate refused bc@2" in refused.stderr and "--force" in refused.stderr
    assert ws.models.resolve("bc@2").stage == "registered"  # registry unchanged
    assert ws.models.resolve("bc@1").stage == "production"

    text = run_cli(
        "model", "promote", weak, "--to", "production", "--gate", gate, "--data", test,
        "--force", "-m", "demo", cwd=root,
    ).stdout  # fmt: skip
    assert "FAIL" in text and "bc@2: registered -> production" in text
    last = ws.models.history("bc")[-1]
    assert last.version == 2 and last.forced and "gate FAILED, forced" in (last.reason or "")
    assert ws.models.in_stage_at("bc", before_refusal) == 1

    run_cli("model", "rollback", "bc", cwd=root)
    assert ws.models.resolve("bc@1").stage == "production"

    shown = run_json("model", "show", good, "--json", cwd=root)
    assert shown["version"] == 1 and shown["evaluations"][0]["data"] == test

    lineage = run_json("lineage", good, "--json", cwd=root)
    assert lineage["run"]["experiment"] == "bc"
    assert [(i["ref"], i["role"]) for i in lineage["inputs"]] == [(train, "train")]
    tree = run_cli("lineage", good, cwd=root).stdout
    assert "model bc@1" in tree and f"train: {train}" in tree and "added from" in tree
    dot = run_cli("lineage", good, "--dot", cwd=root).stdout
    assert dot.startswith("digraph lineage {") and train in dot and "-> " in dot

    run_cli("model", "retire", weak, cwd=root)
    manifest = ws.models._manifest(ws.models.resolve(weak)).by_path()
    weights = manifest["model/model.skops"].oid  # shared with no other version
    assert ws.blobs.exists(weights)
    gc = run_json("gc", "--grace", "0", "--json", cwd=root)
    assert gc["removed"] >= 1 and not ws.blobs.exists(weights)
    assert ws.fsck().ok
    with pytest.raises(UsageError):
        ws.evaluations.gate(good, tmp_path / "missing.yaml", test)
    [kept] = ws.evaluations.list(weak)  # evaluations of a retired version stay readable
    assert ws.evaluations.get(kept.id).result.metrics == kept.metrics
    assert ws.models.load(good).predict(ws.datasets.to_pandas(test)[FEAT_COLS]) is not None


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_gate_with_unknown_metric_or_no_data_changes_nothing(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    ws = workspace
    train, test, _ = _data(ws, tmp_path)
    ref = _register(ws, train, LogisticRegression(max_iter=2000))
    gate = tmp_path / "gate.yaml"
    gate.write_text("thresholds: {roc_aucc: {min: 0.5}}\n")
    with pytest.raises(UsageError, match="unknown metric 'roc_aucc'"):
        ws.evaluations.promote(ref, "production", gate=gate, data=test)
    with pytest.raises(UsageError, match="needs the evaluation data"):
        ws.evaluations.promote(ref, "production", gate=gate)
    assert ws.models.resolve(ref).stage == "registered"
    gate.write_text("thresholds: {roc_auc: {min: 0.999}}\n")
    with pytest.raises(GateRefused) as e:
        ws.evaluations.promote(ref, "staging", gate=gate, data=test)
    assert e.value.details["verdict"]["failed"][0]["metric"] == "roc_auc"
    assert ws.models.resolve(ref).stage == "registered"
