"""``modelcycle label …`` run as a user runs it: child processes in a workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integration_support import run_cli, run_json, write_iris

SCHEMA = """\
kind: classification
labels: [setosa, versicolor, virginica]
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    run_cli("init", ".", cwd=root)
    write_iris(root / "iris.csv", n=12)
    run_cli("dataset", "add", "iris", "iris.csv", cwd=root)
    (root / "schema.yaml").write_text(SCHEMA)
    return root


def test_label_workflow_from_the_cli(ws: Path) -> None:
    out = run_cli(
        "label",
        "create",
        "flowers",
        "--dataset",
        "iris@1",
        "--schema",
        "schema.yaml",
        "--overlap",
        "2",
        cwd=ws,
    )
    assert "Created project flowers: 12 classification tasks over iris@1, overlap 2" in out.stdout
    assigned = run_json("label", "assign", "flowers", "--annotators", "ann,bob", "--json", cwd=ws)
    assert assigned["assigned"] == 24 and assigned["per_annotator"] == {"ann": 12, "bob": 12}

    (ws / "model.py").write_text(
        "def predict(rows):\n"
        "    return [('setosa' if p < 2.5 else 'virginica', 0.6) for p in rows['petal_length']]\n"
    )
    env_path = {"PYTHONPATH": str(ws)}
    from integration_support import cli_env

    pred = run_json(
        "label",
        "predict",
        "flowers",
        "--model",
        "model:predict",
        "--json",
        cwd=ws,
        env=cli_env(**env_path),
    )
    assert pred["predictions"] == 12

    for task in ("0", "1"):
        run_cli(
            "label",
            "annotate",
            "flowers",
            "--task",
            task,
            "--annotator",
            "ann",
            "--value",
            "setosa",
            cwd=ws,
        )
    run_cli(
        "label",
        "annotate",
        "flowers",
        "--task",
        "0",
        "--annotator",
        "bob",
        "--value",
        "setosa",
        cwd=ws,
    )
    run_cli(
        "label",
        "annotate",
        "flowers",
        "--task",
        "1",
        "--annotator",
        "bob",
        "--value",
        "virginica",
        cwd=ws,
    )
    status = run_json("label", "status", "flowers", "--json", cwd=ws)
    assert status["labeled"] == 2 and status["conflicts"] == 1
    assert status["per_annotator"]["ann"] == {
        "assigned": 12,
        "done": 2,
        "in_progress": 10,
        "conflicts": 1,
    }
    text = run_cli("label", "status", "flowers", cwd=ws).stdout
    assert "12 tasks, 2 labeled" in text and "ann" in text

    agreement = run_json("label", "agreement", "flowers", "--json", cwd=ws)
    assert agreement["annotators"] == ["ann", "bob"]

    run_cli(
        "label",
        "decide",
        "flowers",
        "--task",
        "1",
        "--reviewer",
        "lead",
        "--value",
        "setosa",
        cwd=ws,
    )
    assert run_json("label", "status", "flowers", "--json", cwd=ws)["conflicts"] == 0

    out_json = ws / "flowers.json"
    run_cli("label", "export", "flowers", "--format", "label-studio", "--output", out_json, cwd=ws)
    tasks = json.loads(out_json.read_text())
    assert len(tasks) == 12
    assert len(tasks[0]["annotations"]) == 2 and len(tasks[0]["predictions"]) == 1

    exported = run_json(
        "label", "export", "flowers", "--to-dataset", "iris-labeled", "--json", cwd=ws
    )
    assert exported["version"] == "iris-labeled@1"
    lineage = run_json("lineage", "iris-labeled@1", "--json", cwd=ws)
    assert lineage["parents"][0]["ref"] == "iris@1"

    listing = run_json("label", "list", "--json", cwd=ws)
    assert [p["name"] for p in listing] == ["flowers"]
    assert listing[0]["annotations"] == 4


def test_label_cli_errors_have_exit_codes_and_hints(ws: Path) -> None:
    run_cli(
        "label",
        "create",
        "flowers",
        "--dataset",
        "iris@1",
        "--schema",
        "schema.yaml",
        "--annotators",
        "ann",
        cwd=ws,
    )
    bad = run_cli(
        "label",
        "annotate",
        "flowers",
        "--task",
        "0",
        "--annotator",
        "ann",
        "--value",
        "rose",
        cwd=ws,
        expect=5,
    )
    assert "label 'rose' is not in the schema" in bad.stderr and "hint:" in bad.stderr
    who = run_cli(
        "label",
        "annotate",
        "flowers",
        "--task",
        "0",
        "--annotator",
        "zed",
        "--value",
        "setosa",
        cwd=ws,
        expect=3,
    )
    assert "annotator 'zed' does not exist" in who.stderr
    missing = run_cli("label", "status", "flower", cwd=ws, expect=3)
    assert "did you mean 'flowers'" in missing.stderr
    dup = run_cli(
        "label",
        "create",
        "flowers",
        "--dataset",
        "iris@1",
        "--schema",
        "schema.yaml",
        cwd=ws,
        expect=4,
    )
    assert "exists already" in dup.stderr
    fmt = run_cli(
        "label", "export", "flowers", "--format", "cocoa", "--output", "x", cwd=ws, expect=2
    )
    assert "did you mean 'coco'" in fmt.stderr
    (ws / "bad.json").write_text('[{"id": 1}]')
    imp = run_cli(
        "label", "import", "flowers", "bad.json", "--format", "label-studio", cwd=ws, expect=5
    )
    assert "Traceback" not in imp.stderr
    assert run_json("label", "status", "flowers", "--json", cwd=ws)["labeled"] == 0
