"""Drift in a workspace: dataset versions as references with their sketch stored once,
files and frames as current data, the HTML report, and the ``drift`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

import modelcycle as mc
from modelcycle.cli.drift import drift as drift_command
from modelcycle.core.errors import NotFoundError, ValidationFailed
from modelcycle.monitoring.service import SKETCH_KIND, DriftService
from modelcycle.store.sketches import SketchStore

N = 3000


def tables(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pl.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, N),
            "age": rng.normal(40, 12, N),
            "tenure": rng.integers(0, 40, N),
            "plan": rng.choice(["basic", "pro", "team"], N, p=[0.6, 0.3, 0.1]).tolist(),
            "churn_score": rng.random(N),
        }
    )
    cur = ref.with_columns(
        pl.col("income") * 1.4,
        pl.Series("plan", rng.choice(["basic", "pro", "team"], N, p=[0.3, 0.3, 0.4]).tolist()),
        pl.Series("churn_score", rng.random(N) ** 0.5),
    )
    return ref, cur


def service(ws: mc.Workspace) -> DriftService:
    return DriftService(SketchStore(ws.store), ws.datasets, ws.blobs)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    ref, cur = tables()
    ref.write_parquet(tmp_path / "reference.parquet")
    cur.write_csv(tmp_path / "current.csv")
    return tmp_path / "reference.parquet", tmp_path / "current.csv"


def test_a_dataset_reference_is_sketched_once_and_reused(
    workspace: mc.Workspace, files: tuple[Path, Path]
) -> None:
    ref_path, cur_path = files
    workspace.datasets.add("customers", ref_path)
    drift = service(workspace)
    first = drift.drift("customers", cur_path, prediction="churn_score")
    assert first.reference_sketch == "stored now"
    version = workspace.datasets.resolve("customers@1")
    rows = SketchStore(workspace.store).for_version(version.id)
    assert [r.kind for r in rows] == [SKETCH_KIND]
    assert workspace.blobs.exists(rows[0].sketch_oid)
    assert [e.kind for e in workspace.events(kind="dataset.sketch")] == ["dataset.sketch.created"]

    second = drift.drift("customers@1", cur_path, prediction="churn_score")
    assert second.reference_sketch == "stored"
    assert SketchStore(workspace.store).for_version(version.id) == rows
    assert first.drifted_columns == second.drifted_columns == ["income", "plan", "churn_score"]
    assert second.prediction is not None and second.prediction.drifted
    for a, b in zip(first.columns, second.columns, strict=True):
        assert (a.test, a.drifted) == (b.test, b.drifted)
        assert b.score == pytest.approx(a.score, abs=1e-4)
    assert first.dataset_drift and second.dataset_drift  # 3 of 5

    info = drift.sketch("customers")
    assert (info.oid, info.created, info.columns) == (rows[0].sketch_oid, False, 5)
    assert SketchStore(workspace.store).live() == [("sketch of customers@1", rows[0].sketch_oid)]
    workspace.datasets.delete("customers@1")
    assert SketchStore(workspace.store).live() == []


def test_a_lost_sketch_blob_is_computed_again(
    workspace: mc.Workspace, files: tuple[Path, Path]
) -> None:
    ref_path, cur_path = files
    workspace.datasets.add("customers", ref_path)
    drift = service(workspace)
    info = drift.sketch("customers")
    assert info.created
    store = SketchStore(workspace.store)
    row = store.for_version(workspace.datasets.resolve("customers").id)[0]
    store.replace(row, dataset_ref="customers@1", sketch_oid="00" * 32, size=0)
    result = drift.drift("customers", cur_path)
    assert result.reference_sketch == "stored now"
    again = store.for_version(row.dataset_version_id)[0]
    assert again.sketch_oid == info.oid and workspace.blobs.exists(again.sketch_oid)


def test_current_data_as_a_dataset_version_a_frame_or_nothing(
    workspace: mc.Workspace, files: tuple[Path, Path], tmp_path: Path
) -> None:
    ref_path, cur_path = files
    workspace.datasets.add("customers", ref_path)
    workspace.datasets.add("traffic", cur_path)
    drift = service(workspace)
    by_ref = drift.drift("customers", "traffic@1", columns=["income", "plan"])
    assert (by_ref.current, by_ref.drifted_columns) == ("traffic@1", ["income", "plan"])
    frame = pl.read_csv(cur_path).to_pandas()
    by_frame = drift.drift(ref_path, frame, columns=["income", "plan"])
    assert by_frame.reference == str(ref_path) and by_frame.reference_sketch == "data"
    assert by_frame.drifted_columns == ["income", "plan"]
    with pytest.raises(NotFoundError, match="no file and no dataset version 'nothing'"):
        drift.drift("customers", "nothing")
    with pytest.raises(NotFoundError, match="does not exist"):
        drift.drift("customers", tmp_path / "missing.parquet")


def test_report_and_multivariate(workspace: mc.Workspace, files: tuple[Path, Path]) -> None:
    ref_path, cur_path = files
    workspace.datasets.add("customers", ref_path)
    drift = service(workspace)
    result = drift.drift("customers", cur_path, multivariate=True)
    assert result.multivariate is not None and result.multivariate.status == "ok"
    out = drift.report(result, workspace.root / "reports" / "drift.html")
    html = out.read_text()
    assert html.count("<svg") == 6 and "Multivariate drift" in html
    assert json.loads(json.dumps(result.to_dict()))["multivariate"]["method"] == (
        "pca_reconstruction_error"
    )


# -- the command ---------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path: Path, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    ws = mc.Workspace.create(tmp_path / "ws")
    ws.datasets.add("customers", files[0])
    ws.close()
    monkeypatch.chdir(tmp_path / "ws")
    return CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command("drift")(drift_command)
    app.command("noop")(lambda: None)  # two commands: typer keeps `drift` as a name
    return app


def test_the_drift_command(cli: CliRunner, files: tuple[Path, Path]) -> None:
    cur = str(files[1])
    out = cli.invoke(_app(), ["drift", "customers", cur, "--json", "--report", "d.html"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["dataset_drift"] is True and doc["drift_share"] == pytest.approx(0.6)
    assert doc["drifted_columns"] == ["income", "plan", "churn_score"]
    first = doc["columns"][0]
    assert {"column", "test", "statistic", "threshold", "drifted"} <= set(first)
    assert (first["column"], first["test"], first["threshold"]) == ("income", "wasserstein", 0.1)
    assert Path(doc["report"]).is_file()

    text = cli.invoke(
        _app(),
        ["drift", "customers", cur, "--columns", "age,plan", "--test", "psi", "--test", "age=ks"],
    )
    assert text.exit_code == 0, text.output
    assert "DRIFT: 1 of 2 columns drifted" in text.output
    assert "ks" in text.output and "psi" in text.output

    failed = cli.invoke(_app(), ["drift", "customers", cur, "--fail-on-drift"])
    assert isinstance(failed.exception, ValidationFailed)
    assert "3 of 5 columns drifted" in failed.exception.message

    bad = cli.invoke(_app(), ["drift", "customers", cur, "--threshold", "age"])
    assert "not a number" in str(bad.exception)


def test_estimated_performance_and_multivariate_from_the_service(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6000, 2))
    p = 1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1])))
    y = (rng.random(6000) < p).astype(int)
    frame = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "score": p, "label": y})
    frame[:4000].write_parquet(tmp_path / "labelled.parquet")
    workspace.datasets.add("scored", tmp_path / "labelled.parquet")
    unlabelled = frame[4000:].drop("label").to_pandas()
    drift = service(workspace)
    est = drift.estimate_performance("scored", unlabelled, target="label", scores="score")
    assert est.realized is None and est.rows == 2000
    assert est.estimated["accuracy"] == pytest.approx(est.reference["accuracy"], abs=0.03)
    assert est.to_dict()["assumptions"]
    mv = drift.multivariate("scored", unlabelled, columns=["a", "b"], chunks=4)
    assert mv.status == "ok" and not mv.drifted and len(mv.reference_chunks) == 4


def test_gc_keeps_the_sketch_of_a_live_version_only(
    workspace: mc.Workspace, files: tuple[Path, Path]
) -> None:
    workspace.datasets.add("customers", files[0])
    info = service(workspace).sketch("customers")
    workspace.gc(grace_seconds=0)
    assert workspace.blobs.exists(info.oid)
    assert workspace.fsck().ok
    workspace.datasets.delete("customers@1")
    workspace.gc(grace_seconds=0)
    assert not workspace.blobs.exists(info.oid)
