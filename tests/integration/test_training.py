"""Train specs, tuning and executors, on both backend pairs (Ray on the local one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from integration_support import run_cli, run_json

import modelcycle as mc
from modelcycle.core.errors import NotFoundError, StorageError, UsageError
from modelcycle.flavors.package import load_package


def _cancer(ws: mc.Workspace, tmp_path: Path) -> tuple[str, str]:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.insert(0, "id", range(len(frame)))
    frame["size"] = np.where(frame["mean_area"] > 700, "large", "small")  # a text feature
    frame.to_csv(tmp_path / "bc.csv", index=False)
    ws.datasets.add("bc", tmp_path / "bc.csv")
    train, val = ws.datasets.split(
        "bc@1", "0.8,0.2", seed=0, stratify="target", names=["train", "val"]
    )
    return train.ref, val.ref


def _spec(train: str, val: str, **more: Any) -> dict[str, Any]:
    return {
        "experiment": "bc",
        "data": {"train": train, "validation": val},
        "target": "target",
        "exclude": ["id"],
        "model": {"estimator": "random_forest", "params": {"n_estimators": 30}},
        "metrics": ["accuracy", "roc_auc"],
        "cv": 3,
        **more,
    }


def test_train_spec_is_a_tracked_run_with_a_model(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    train, val = _cancer(ws, tmp_path)
    result = ws.training.train(_spec(train, val))
    assert result.task == "classification"
    assert result.metrics["cv_accuracy_mean"] > 0.85
    assert result.metrics["val_roc_auc"] > 0.9
    run = ws.runs.get(result.run_id)
    assert run.status == "finished"
    assert run.params["n_estimators"] == "30" and run.params["cv"] == "3"
    assert sorted(run.inputs()) == sorted([(train, "train"), (val, "validation")])
    assert [p.step for p in run.metric_history("cv_accuracy")] == [0, 1, 2]
    paths = [p for p, _ in run.artifacts()]
    assert "models/model/model.toml" in paths
    # The logged model predicts what the trained one does.
    out = ws.runs.download_artifacts(run.id, tmp_path / "dl", "models/model")
    loaded = load_package(out / "models" / "model")
    x = ws.datasets.load(val).drop("target", "id").to_pandas()
    x["size"] = x["size"].astype("category")
    assert (loaded.predict(x) == result.model.predict(x)).all()


# Storage is the same for every estimator: the embedded backend is enough here.
@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
@pytest.mark.parametrize("estimator", ["xgboost", "lightgbm", "logistic_regression"])
def test_each_training_flavor(workspace: mc.Workspace, tmp_path: Path, estimator: str) -> None:
    ws = workspace
    train, val = _cancer(ws, tmp_path)
    params = {"logistic_regression": {"max_iter": 2000}}.get(estimator, {"n_estimators": 20})
    spec = _spec(train, val, model={"estimator": estimator, "params": params})
    if estimator == "logistic_regression":  # unscaled features: keep lbfgs converging
        spec["exclude"] = []
        spec["features"] = ["mean_radius", "mean_texture", "mean_smoothness", "worst_radius"]
    result = ws.training.train(spec)
    assert result.metrics["val_accuracy"] > 0.85
    tags = ws.runs.get(result.run_id).tags
    assert tags["flavor"] == {"xgboost": "xgboost", "lightgbm": "lightgbm"}.get(
        estimator, "sklearn"
    )


def test_tuning_makes_child_runs_and_resumes(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    train, val = _cancer(ws, tmp_path)
    search = {
        "trials": 4,
        "metric": "accuracy",
        "space": {"max_depth": {"int": [2, 8]}, "max_features": {"choice": ["sqrt", "log2"]}},
    }
    spec = _spec(train, val, name="rf-search", search=search)
    first = ws.training.train(spec)
    assert len(first.children) == 4
    parent = ws.runs.get(first.run_id)
    assert parent.tags["tuning"] == "optuna"
    assert parent.metrics["trials_complete"] + parent.metrics.get("trials_pruned", 0) == 4
    assert 2 <= int(parent.params["best.max_depth"]) <= 8
    assert "models/model/model.toml" in [p for p, _ in parent.artifacts()]
    children = ws.runs.search("bc", parent=first.run_id)
    assert {c.params["max_features"] for c in children} <= {"sqrt", "log2"}
    assert all(c.parent_id == first.run_id for c in children)

    # The same study with a higher trial budget runs only the missing trials.
    more = _spec(train, val, name="rf-search", search={**search, "trials": 6})
    second = ws.training.train(more)
    assert len(second.children) == 2


def test_bad_specs_name_the_problem(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    train, val = _cancer(ws, tmp_path)
    cases = [
        ({**_spec(train, val), "metrcs": ["accuracy"]}, "unknown key 'metrcs'", "metrics"),
        (_spec(train, val, model={"estimator": "random_forrest"}), "random_forest", ""),
        (
            _spec(train, val, model={"estimator": "sklearn.svm.SVC", "flavor": "sklaern"}),
            "did you mean 'sklearn'",
            "",
        ),
        (_spec(train, val, metrics=["acuracy"]), "did you mean 'accuracy'", ""),
        (
            _spec(train, val, model={"estimator": "random_forest", "params": {"n_trees": 3}}),
            "takes no parameter 'n_trees'",
            "",
        ),
    ]
    for spec, says, _ in cases:
        with pytest.raises(UsageError) as err:
            ws.training.train(spec)
        assert says in err.value.message, err.value.message
    with pytest.raises(NotFoundError):
        ws.training.train(_spec("nope@1", val))
    with pytest.raises(NotFoundError) as target:
        ws.training.train({**_spec(train, val), "target": "tagret"})
    assert "did you mean 'target'" in target.value.message
    assert ws.runs.search() == []  # none of these recorded a run


def test_a_model_that_fails_to_train_marks_the_run_failed(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    ws = workspace
    train, val = _cancer(ws, tmp_path)
    spec = _spec(
        train, val, cv=0, model={"estimator": "logistic_regression", "params": {"C": -1.0}}
    )
    with pytest.raises(mc.ModelcycleError):
        ws.training.train(spec)
    [run] = ws.runs.search("bc")
    assert run.status == "failed"
    assert "C" in (run.error or "")


def test_train_from_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    run_cli("init", ".", cwd=root)
    ws = mc.Workspace.open(root)
    try:
        train, val = _cancer(ws, tmp_path)
    finally:
        ws.close()
    (root / "spec.yaml").write_text(json.dumps(_spec(train, val)))
    out = run_json("train", "spec.yaml", "--json", cwd=root)
    assert out["metrics"]["val_accuracy"] > 0.85
    text = run_cli("train", "spec.yaml", cwd=root).stdout
    assert "trained (classification)" in text and "val_roc_auc" in text
    (root / "bad.yaml").write_text("data: {train: x}\ntarget: y\nmodel: {estimator: svm}\n")
    bad = run_cli("train", "bad.yaml", cwd=root, expect=2)
    assert "unknown estimator 'svm'" in bad.stderr


@pytest.fixture(scope="module")
def local_ray() -> Any:
    import ray  # a dev dependency: CI installs it, so this test never skips

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_the_same_spec_runs_on_ray(local_ray: Any, workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    train, val = _cancer(ws, tmp_path)
    plain = ws.training.train(_spec(train, val, executor="ray"))
    assert plain.metrics["cv_accuracy_mean"] > 0.85
    local = ws.training.train(_spec(train, val))
    assert plain.metrics["cv_accuracy_mean"] == pytest.approx(local.metrics["cv_accuracy_mean"])
    tuned = ws.training.train(
        _spec(
            train,
            val,
            name="ray-search",
            executor="ray",
            workers=2,
            search={"trials": 4, "space": {"max_depth": {"int": [2, 6]}}},
        )
    )
    assert len(tuned.children) == 4
    # Child runs recorded by Ray workers landed in this workspace's store.
    for child in ws.runs.search("bc", parent=tuned.run_id):
        assert child.status == "finished" and "cv_accuracy_mean" in child.metrics


def test_unreachable_ray_records_nothing(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    train, val = _cancer(ws, tmp_path)
    with pytest.raises(StorageError) as err:
        ws.training.train(_spec(train, val, executor="ray://127.0.0.1:9"))
    assert "127.0.0.1:9" in err.value.message
    assert ws.runs.search() == []
