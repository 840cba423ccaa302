"""Pipelines re-run only what a change affects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integration_support import run_cli, run_json, write_iris

import modelcycle as mc
from modelcycle.core.errors import NotFoundError, UsageError

PIPELINE = """\
name: flowers
stages:
  ingest: {add: {dataset: iris-raw, path: raw/iris.csv}}
  clean: {recipe: {input: iris-raw, file: clean.yaml, into: iris}}
  split: {split: {input: iris, ratios: "0.8,0.2", names: [train, val], seed: 0}}
  train: {train: {spec: train.yaml}}
"""

TRAIN = {
    "experiment": "flowers",
    "data": {"train": "iris-train", "validation": "iris-val"},
    "target": "species",
    "model": {"estimator": "random_forest", "params": {"n_estimators": 10}},
    "cv": 0,
}


def _project(root: Path) -> None:
    (root / "raw").mkdir(parents=True)
    write_iris(root / "raw" / "iris.csv", n=90)
    (root / "clean.yaml").write_text("steps:\n  - drop_duplicates: {}\n")
    (root / "train.yaml").write_text(json.dumps(TRAIN))
    (root / "modelcycle.yaml").write_text(PIPELINE)


def _status(result: dict[str, object]) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in result["stages"]}  # type: ignore[attr-defined,index]


def test_rerun_after_a_recipe_change_runs_only_affected_stages(
    workspace: mc.Workspace,
) -> None:
    ws = workspace
    root = ws.root
    _project(root)
    first = ws.pipelines.run(root / "modelcycle.yaml")
    assert _status(first) == {"ingest": "ran", "clean": "ran", "split": "ran", "train": "ran"}
    assert ws.datasets.resolve("iris-train").ref == "iris-train@1"
    assert len(ws.runs.search("flowers")) == 1

    again = ws.pipelines.run(root / "modelcycle.yaml")
    assert set(_status(again).values()) == {"skipped"}
    assert len(ws.runs.search("flowers")) == 1

    (root / "clean.yaml").write_text(
        "steps:\n  - drop_duplicates: {}\n  - filter: {expr: 'sepal_length > 4.8'}\n"
    )
    third = ws.pipelines.run(root / "modelcycle.yaml")
    assert _status(third) == {"ingest": "skipped", "clean": "ran", "split": "ran", "train": "ran"}
    assert ws.datasets.resolve("iris").version == 2
    assert ws.datasets.resolve("iris-train").version == 2
    runs = ws.runs.search("flowers")
    assert len(runs) == 2
    assert ("iris-train@2", "train") in runs[0].inputs()

    history = ws.pipelines.runs("flowers")
    assert [h["status"] for h in history] == ["finished"] * 3
    assert history[0]["stages"]["clean"]["outputs"]["versions"] == ["iris@2"]

    # Only up to a stage; --force runs it even though nothing changed.
    partial = ws.pipelines.run(root / "modelcycle.yaml", stage="clean", force=True)
    assert list(_status(partial)) == ["ingest", "clean"]


def test_bad_pipelines_are_clear(workspace: mc.Workspace) -> None:
    root = workspace.root
    _project(root)
    bad = root / "bad.yaml"
    bad.write_text("stages:\n  a: {split: {input: x, ratio: '0.5,0.5'}}\n")
    with pytest.raises(UsageError) as err:
        workspace.pipelines.run(bad)
    assert "did you mean 'ratios'" in err.value.message
    bad.write_text(
        "stages:\n  a: {split: {input: x}, after: [b]}\n  b: {split: {input: y}, after: [a]}\n"
    )
    with pytest.raises(UsageError) as cycle:
        workspace.pipelines.run(bad)
    assert "cycle" in cycle.value.message
    with pytest.raises(NotFoundError):
        workspace.pipelines.run(root / "modelcycle.yaml", stage="trian")


def test_pipeline_cli(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    run_cli("init", ".", cwd=root)
    _project(root)
    first = run_json("pipeline", "run", "--json", cwd=root)
    assert _status(first)["train"] == "ran"
    text = run_cli("pipeline", "run", cwd=root).stdout
    assert text.count("skipped") == 4 and "pipeline flowers (run 2)" in text
    runs = run_json("pipeline", "runs", "--json", cwd=root)
    assert len(runs) == 2
