"""Labeling projects through the Python API, on both backend pairs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from integration_support import write_csv, write_iris, write_pngs

import modelcycle as mc
from modelcycle.core.errors import (
    ConflictError,
    InputDataError,
    NotFoundError,
    UsageError,
)

IRIS = {"kind": "classification", "labels": ["setosa", "versicolor", "virginica"]}


def _iris_project(ws: mc.Workspace, tmp_path: Path, overlap: int = 2) -> list[str]:
    ws.datasets.add("iris", write_iris(tmp_path / "iris.csv", n=30))
    ws.labels.create("iris-labels", "iris@1", IRIS, overlap=overlap)
    return list(ws.datasets.load("iris@1")["species"])


def _counts(ws: mc.Workspace, project: str) -> tuple[int, int, int]:
    p = ws.labels.get(project)
    store = ws.labels.labels
    return (
        len(store.annotations(p.record.id, history=True)),
        len(store.predictions(p.record.id)),
        len(store.annotators(p.record.id)),
    )


def test_classification_project_end_to_end(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    truth = _iris_project(ws, tmp_path)
    project = ws.labels.get("iris-labels")
    assert project.record.num_tasks == 30
    assert project.dataset.ref == "iris@1"

    result = ws.labels.assign("iris-labels", ["ann", "bob", "cat"])
    assert result["assigned"] == 60  # 30 tasks x overlap 2
    pairs = ws.labels.labels.assignments(project.record.id)
    per_task: dict[int, set[str]] = {}
    for tid, a in pairs:
        per_task.setdefault(tid, set()).add(a)
    assert all(len(v) == 2 for v in per_task.values()) and len(per_task) == 30
    assert sorted(result["per_annotator"].values()) == [20, 20, 20]

    # Everyone labels what they were given; bob disagrees on tasks 0-2.
    keys = {tid: key for tid, key in ((t.id, t.key) for t in ws.labels.labels.tasks(1))}
    records = []
    for tid, a in pairs:
        key = keys[tid]
        label = truth[int(key)]
        if a == "bob" and int(key) < 3:
            label = "virginica" if label != "virginica" else "setosa"
        records.append((key, a, label))
    assert ws.labels.annotate_many("iris-labels", records) == 60

    status = ws.labels.status("iris-labels")
    assert status["tasks"] == 30 and status["labeled"] == 30 and status["complete"] == 30
    bob_disputed = {key for key, a, _ in records if a == "bob" and int(key) < 3}
    assert status["conflicts"] == len(bob_disputed) > 0
    assert status["per_annotator"]["bob"]["conflicts"] == len(bob_disputed)
    assert status["per_annotator"]["ann"]["in_progress"] == 0

    report = ws.labels.agreement("iris-labels")
    assert report["annotators"] == ["ann", "bob", "cat"]
    assert 0 < report["overall"]["cohen_kappa_mean"] < 1
    assert report["per_annotator"]["bob"]["agreement_with_others"] < min(
        report["per_annotator"]["ann"]["agreement_with_others"],
        report["per_annotator"]["cat"]["agreement_with_others"],
    )

    # A reviewer settles one conflict; an edit keeps history.
    first = sorted(bob_disputed)[0]
    ws.labels.decide("iris-labels", first, truth[int(first)], reviewer="lead")
    assert ws.labels.status("iris-labels")["conflicts"] == len(bob_disputed) - 1
    bob_key = next(key for key, a, _ in records if a == "bob")
    ws.labels.annotate("iris-labels", bob_key, "bob", truth[int(bob_key)])
    history = ws.labels.history("iris-labels", bob_key)
    bob_rows = [h for h in history if h["annotator"] == "bob"]
    assert len(bob_rows) == 2
    assert bob_rows[0]["replaced_at"] is not None and bob_rows[1]["replaced_at"] is None

    version = ws.labels.export_to_dataset("iris-labels", "iris-labeled", message="first pass")
    df = ws.datasets.load(version)
    assert df.columns[-2:] == ["label", "label_annotators"]
    resolved = ws.labels.consensus("iris-labels")
    assert set(resolved["conflicts"]) <= bob_disputed
    for i, (label, n) in enumerate(zip(df["label"], df["label_annotators"], strict=True)):
        assert n == 2
        if str(i) not in resolved["conflicts"]:
            assert label == truth[i]
    assert version.step["op"] == "label-export"
    assert version.step["project"] == "iris-labels"
    assert version.step["annotators"] == ["ann", "bob", "cat"]
    assert version.step["reviewers"] == ["lead"]
    parents = ws.store.parents(version.id)
    assert [(p.ref, role) for p, role in parents] == [("iris@1", "labeled")]
    assert ws.datasets.lineage(version.ref).to_dict()["parents"][0]["ref"] == "iris@1"


def test_bad_annotations_are_rejected_and_change_nothing(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    ws = workspace
    _iris_project(ws, tmp_path)
    ws.labels.assign("iris-labels", ["ann"])
    ws.labels.annotate("iris-labels", "0", "ann", "setosa")
    before = _counts(ws, "iris-labels")

    with pytest.raises(InputDataError) as bad_label:
        ws.labels.annotate_many("iris-labels", [("1", "ann", "setosa"), ("2", "ann", "setosaa")])
    assert "task '2'" in bad_label.value.message
    assert "'setosaa'" in bad_label.value.message and "setosa" in bad_label.value.message

    with pytest.raises(NotFoundError) as who:
        ws.labels.annotate("iris-labels", "1", "mallory", "setosa")
    assert "mallory" in who.value.message and "label assign" in (who.value.hint or "")

    with pytest.raises(NotFoundError) as no_task:
        ws.labels.annotate("iris-labels", "999", "ann", "setosa")
    assert "999" in no_task.value.message

    with pytest.raises(NotFoundError) as no_project:
        ws.labels.status("iris-label")
    assert "did you mean 'iris-labels'" in no_project.value.message

    with pytest.raises(ConflictError):
        ws.labels.create("iris-labels", "iris@1", IRIS)
    with pytest.raises(UsageError) as bad_field:
        ws.labels.create("other", "iris@1", {**IRIS, "field": "petal"})
    assert "petal" in bad_field.value.message
    assert _counts(ws, "iris-labels") == before


def test_predictions_are_separate_and_link_annotations(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    ws = workspace
    truth = _iris_project(ws, tmp_path, overlap=1)

    def petal_rule(rows: pl.DataFrame) -> list[tuple[str, float]]:
        out = []
        for petal in rows["petal_length"]:
            label = "setosa" if petal < 2.5 else "versicolor" if petal < 4.9 else "virginica"
            out.append((label, 0.9))
        return out

    assert ws.labels.predict("iris-labels", petal_rule, model_name="petal-rule@1") == 30
    p = ws.labels.get("iris-labels")
    preds = ws.labels.labels.predictions(p.record.id)
    assert len(preds) == 30 and {x.model for x in preds} == {"petal-rule@1"}
    assert all(x.score == pytest.approx(0.9) for x in preds)
    assert ws.labels.status("iris-labels")["labeled"] == 0  # suggestions are not labels

    ws.labels.assign("iris-labels", ["ann"])
    first = preds[0]
    ws.labels.annotate("iris-labels", "0", "ann", truth[0], prediction_id=first.id)
    [annotation] = ws.labels.labels.annotations(p.record.id)
    assert annotation.prediction_id == first.id

    with pytest.raises(UsageError) as short:
        ws.labels.predict("iris-labels", lambda rows: ["setosa"])
    assert "returned 1 predictions for 30 inputs" in short.value.message
    with pytest.raises(InputDataError) as wrong:
        ws.labels.predict("iris-labels", lambda rows: ["rose"] * rows.height)
    assert "rose" in wrong.value.message
    assert len(ws.labels.labels.predictions(p.record.id)) == 30

    snap = ws.labels.snapshot("iris-labels")
    assert snap.annotations[0].prediction is not None
    assert snap.predictions[snap.annotations[0].prediction].model == "petal-rule@1"

    version = ws.labels.export_to_dataset("iris-labels", "iris-labeled")
    assert version.step["models"] == ["petal-rule@1"]


LS_TASKS: list[dict[str, Any]] = [
    {
        "id": 101,
        "data": {"text": "The battery lasts for days, love it", "source": "review"},
        "annotations": [
            {
                "id": 11,
                "completed_by": 1,
                "result": [
                    {
                        "id": "r1",
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["positive"]},
                    }
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-03-01T10:00:00.000000Z",
                "updated_at": "2026-03-01T10:00:00.000000Z",
                "lead_time": 4.2,
            },
            {
                "id": 12,
                "completed_by": 2,
                "result": [
                    {
                        "id": "r2",
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["positive"]},
                    }
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-03-01T11:00:00.000000Z",
                "updated_at": "2026-03-01T11:00:00.000000Z",
                "lead_time": 2.0,
            },
        ],
        "predictions": [
            {
                "id": 7,
                "model_version": "sentiment-v3",
                "score": 0.82,
                "result": [
                    {
                        "id": "p1",
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["positive"]},
                    }
                ],
            }
        ],
    },
    {
        "id": 102,
        "data": {"text": "Screen cracked on day two", "source": "review"},
        "annotations": [
            {
                "id": 13,
                "completed_by": 1,
                "result": [
                    {
                        "id": "r3",
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["negative"]},
                    }
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-03-02T09:30:00.000000Z",
                "updated_at": "2026-03-02T09:30:00.000000Z",
                "lead_time": 3.1,
            }
        ],
        "predictions": [],
    },
    {
        "id": 103,
        "data": {"text": "Arrived on time", "source": "survey"},
        "annotations": [],
        "predictions": [],
    },
]


def _normalized(tasks: list[dict[str, Any]]) -> str:
    return json.dumps(sorted(tasks, key=lambda t: t["id"]), sort_keys=True)


def test_label_studio_round_trip_preserves_content(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    src = tmp_path / "ls.json"
    src.write_text(json.dumps(LS_TASKS))
    schema = {
        "kind": "classification",
        "labels": ["positive", "negative", "neutral"],
        "field": "text",
        "name": "sentiment",
    }
    result = ws.labels.import_("reviews", src, "label-studio", schema=schema)
    assert result["created"] and result["tasks"] == 3
    assert result["annotations"] == 3 and result["predictions"] == 1
    df = ws.datasets.load(result["dataset"])
    assert df["text"].to_list() == [t["data"]["text"] for t in LS_TASKS]

    out = ws.labels.export("reviews", "label-studio", tmp_path / "out.json")
    assert _normalized(json.loads(out.read_text())) == _normalized(LS_TASKS)

    # Importing the same file into the existing project matches tasks, supersedes
    # each annotator's label and adds nothing else.
    again = ws.labels.import_("reviews", src, "label-studio")
    assert not again["created"] and again["tasks"] == 3
    p = ws.labels.get("reviews")
    assert len(ws.labels.labels.annotations(p.record.id)) == 3


def test_label_studio_bad_file_imports_nothing(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    good = tmp_path / "ls.json"
    good.write_text(json.dumps(LS_TASKS))
    schema = {
        "kind": "classification",
        "labels": ["positive", "negative", "neutral"],
        "field": "text",
        "name": "sentiment",
    }
    ws.labels.import_("reviews", good, "label-studio", schema=schema)
    before = _counts(ws, "reviews")

    broken = json.loads(json.dumps(LS_TASKS))
    broken[1]["annotations"][0]["result"][0]["value"]["choices"] = ["angry"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    with pytest.raises(InputDataError) as err:
        ws.labels.import_("reviews", bad, "label-studio")
    assert "angry" in err.value.message and "102" in err.value.message
    assert _counts(ws, "reviews") == before

    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InputDataError) as junk:
        ws.labels.import_("reviews", tmp_path / "junk.json", "label-studio")
    assert "not valid JSON" in junk.value.message
    assert _counts(ws, "reviews") == before
    assert ws.datasets.versions("reviews")[-1].version == 1  # no stray dataset version


def _box_project(ws: mc.Workspace, tmp_path: Path, name: str = "boxes") -> None:
    if ws.store.get_dataset("shapes") is None:
        ws.datasets.add("shapes", write_pngs(tmp_path / "imgs", count=4, size=32))
    ws.labels.create(name, "shapes@1", {"kind": "boxes", "labels": ["cat", "dog"]})
    ws.labels.assign(name, ["ann"])


def test_coco_export_import_round_trip(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    _box_project(ws, tmp_path)
    boxes = {
        "img0.png": [{"label": "cat", "x": 1, "y": 2, "w": 10, "h": 12}],
        "img1.png": [
            {"label": "dog", "x": 0, "y": 0, "w": 32, "h": 32},
            {"label": "cat", "x": 5.5, "y": 6.25, "w": 3, "h": 4},
        ],
        "img2.png": [],
    }
    ws.labels.annotate_many("boxes", [(k, "ann", v) for k, v in boxes.items()])
    with pytest.raises(InputDataError) as outside:
        ws.labels.annotate(
            "boxes", "img3.png", "ann", [{"label": "cat", "x": 30, "y": 0, "w": 10, "h": 5}]
        )
    assert "outside" in outside.value.message and "img3.png" in outside.value.message

    out = ws.labels.export("boxes", "coco", tmp_path / "coco")
    coco = json.loads((out / "annotations.json").read_text())
    assert {i["file_name"] for i in coco["images"]} == set(boxes)  # img3 has no label yet
    assert len(coco["annotations"]) == 3
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(boxes)

    _box_project(ws, tmp_path, "boxes-again")
    result = ws.labels.import_("boxes-again", out / "annotations.json", "coco", add_annotators=True)
    assert result["annotations"] == 3

    def rounded(value: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (b["label"], *(round(float(b[k]), 6) for k in ("x", "y", "w", "h"))) for b in value
        )

    got = {a.task_key: a.value for a in ws.labels.snapshot("boxes-again").annotations}
    assert {k: rounded(v) for k, v in got.items()} == {k: rounded(v) for k, v in boxes.items()}

    version = ws.labels.export_to_dataset("boxes", "shapes-labeled")
    files = {e.path for e in ws.datasets.manifest(version).files}  # type: ignore[union-attr]
    assert "labels/boxes.coco.json" in files and "img0.png" in files


def test_background_export_reports_progress(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    _iris_project(ws, tmp_path, overlap=1)
    job = ws.labels.start_export("iris-labels", "csv", tmp_path / "out.csv")
    path = job.result(timeout=60)
    assert job.done() and job.fraction == 1.0
    assert path.read_text().splitlines()[0].startswith("key")
    failing = ws.labels.start_export("iris-labels", "coco", tmp_path / "x")
    with pytest.raises(UsageError):
        failing.result(timeout=60)


def test_label_issues_find_flipped_labels(workspace: mc.Workspace, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    ws = workspace
    data = load_digits()
    names = [f"digit{n}" for n in data.target_names]
    rng = random.Random(7)
    n = len(data.target)
    flipped = set(rng.sample(range(n), max(1, n * 5 // 100)))
    given = []
    for i, t in enumerate(data.target):
        label = names[t]
        if i in flipped:
            label = rng.choice([x for x in names if x != label])
        given.append(label)
    header = [f.replace("/", "_") for f in data.feature_names]
    write_csv(tmp_path / "digits.csv", header, np.round(data.data, 5).tolist())
    ws.datasets.add("digits", tmp_path / "digits.csv")
    ws.labels.create("digits-labels", "digits@1", {"kind": "classification", "labels": names})
    ws.labels.assign("digits-labels", ["ann"])
    ws.labels.annotate_many("digits-labels", [(str(i), "ann", g) for i, g in enumerate(given)])

    found = ws.labels.issues("digits-labels")
    hits = {int(f["task"]) for f in found} & flipped
    assert len(hits) >= 0.8 * len(flipped), (sorted(flipped), found[:20])
    top = found[0]
    assert top["given"] != top["suggested"] and 0 < top["score"] <= 1


def test_yolo_export_import_round_trip(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    _box_project(ws, tmp_path)
    boxes = {
        "img0.png": [{"label": "dog", "x": 2, "y": 3, "w": 20, "h": 10}],
        "img1.png": [{"label": "cat", "x": 0, "y": 0, "w": 16, "h": 32}],
    }
    ws.labels.annotate_many("boxes", [(k, "ann", v) for k, v in boxes.items()])
    out = ws.labels.export("boxes", "yolo", tmp_path / "yolo")
    lines = (out / "labels" / "img0.txt").read_text().split()
    assert lines[0] == "1" and float(lines[1]) == pytest.approx(12 / 32)
    _box_project(ws, tmp_path, "boxes-yolo")
    result = ws.labels.import_("boxes-yolo", out, "yolo", add_annotators=True)
    assert result["annotations"] == 2
    got = {a.task_key: a.value for a in ws.labels.snapshot("boxes-yolo").annotations}
    assert set(got) == set(boxes)
    for key, [want] in boxes.items():
        [box] = got[key]
        assert box["label"] == want["label"]
        assert [box[k] for k in "xywh"] == pytest.approx([want[k] for k in "xywh"], abs=0.01)


def test_span_and_number_projects_export_typed_columns(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    ws = workspace
    texts = ["Ada Lovelace met Babbage in London", "Paris is in France", "no names here"]
    write_csv(tmp_path / "texts.csv", ["text", "stars"], [[t, i] for i, t in enumerate(texts)])
    ws.datasets.add("texts", tmp_path / "texts.csv")
    ws.labels.create(
        "ner",
        "texts@1",
        {"kind": "spans", "labels": ["PER", "LOC"], "field": "text", "name": "entities"},
        annotators=["ann"],
    )
    ws.labels.annotate_many(
        "ner",
        [
            (
                "0",
                "ann",
                [{"start": 0, "end": 12, "label": "PER"}, {"start": 27, "end": 33, "label": "LOC"}],
            ),
            ("1", "ann", [{"start": 0, "end": 5, "label": "LOC"}]),
            ("2", "ann", []),
        ],
    )
    with pytest.raises(InputDataError) as bad:
        ws.labels.annotate("ner", "1", "ann", [{"start": 5, "end": 2, "label": "LOC"}])
    assert "task '1'" in bad.value.message
    df = ws.datasets.load(ws.labels.export_to_dataset("ner", "texts-ner"))
    assert df["entities"][0].to_list() == [
        {"start": 0, "end": 12, "label": "PER"},
        {"start": 27, "end": 33, "label": "LOC"},
    ]
    assert df["entities"][2].to_list() == []
    ls = json.loads(ws.labels.export("ner", "label-studio", tmp_path / "ner.json").read_text())
    value = ls[1]["annotations"][0]["result"][0]["value"]
    assert (value["start"], value["end"], value["labels"]) == (0, 5, ["LOC"])

    ws.labels.create(
        "rating",
        "texts@1",
        {"kind": "number", "minimum": 0, "maximum": 5},
        overlap=2,
        annotators=["ann", "bob"],
    )
    ws.labels.annotate_many("rating", [("0", "ann", 4), ("0", "bob", 5), ("1", "ann", "2.5")])
    with pytest.raises(InputDataError) as high:
        ws.labels.annotate("rating", "2", "ann", 9)
    assert "above the schema's maximum" in high.value.message
    df = ws.datasets.load(ws.labels.export_to_dataset("rating", "texts-rated"))
    assert df["label"].to_list() == [4.5, 2.5, None]


def test_csv_import_into_an_existing_project(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    truth = _iris_project(ws, tmp_path, overlap=1)
    ws.labels.assign("iris-labels", ["ann"])
    good = tmp_path / "labels.csv"
    write_csv(good, ["key", "annotator", "label"], [[str(i), "ann", truth[i]] for i in range(5)])
    result = ws.labels.import_("iris-labels", good, "csv")
    assert result["annotations"] == 5
    bad = tmp_path / "bad.csv"
    write_csv(bad, ["key", "annotator", "label"], [["5", "ann", truth[5]], ["6", "zed", "setosa"]])
    with pytest.raises(NotFoundError) as who:
        ws.labels.import_("iris-labels", bad, "csv")
    assert "zed" in who.value.message
    assert ws.labels.status("iris-labels")["labeled"] == 5
