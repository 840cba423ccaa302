"""Batch scoring (`modelcycle predict`): files and table versions in, Parquet out, in order.

The end-to-end tests come first; the parts (chunking, ordering, reading ahead, formats,
outputs, the scorer) are tested alone at the end.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import modelcycle as mc
from modelcycle.cli.predict import predict
from modelcycle.core.errors import ConflictError, InputDataError, NotFoundError, UsageError
from modelcycle.deploy import batch
from modelcycle.deploy.batch import score
from modelcycle.flavors import load_package, save_package

LOCAL_ONLY = pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)


class Rule:
    """A python_function model: Python code that holds the GIL while it predicts."""

    def __init__(self, column: str, cutoff: float) -> None:
        self.column = column
        self.cutoff = cutoff

    def predict(self, data: Any) -> Any:
        return (pd.DataFrame(data)[self.column] > self.cutoff).astype("int64").to_numpy()


class BlasThreads:
    """A python_function model that predicts how many threads BLAS may use while it runs."""

    def predict(self, data: Any) -> Any:
        from threadpoolctl import threadpool_info

        counts = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        return np.full(len(pd.DataFrame(data)), max(counts), dtype=np.int64)


def _iris() -> tuple[pd.DataFrame, pd.Series]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return x, y.map(dict(enumerate(load_iris().target_names)))  # classes are strings


def _cancer() -> tuple[pd.DataFrame, pd.Series]:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x.columns = [c.replace(" ", "_") for c in x.columns]
    return x, y


def _register(ws: mc.Workspace, model: Any, x: pd.DataFrame, name: str, **options: Any) -> str:
    with ws.start_run(name) as run:
        version = run.log_model(
            model, "model", input_example=x.head(3), register_as=name, **options
        )
    return str(version.ref)


def _ids(n: int) -> list[int]:
    return (np.arange(n) * 7 + 3).tolist()  # not the row numbers


def _with_id(x: pd.DataFrame) -> pd.DataFrame:
    frame = x.copy()
    frame.insert(0, "id", _ids(len(frame)))
    return frame


def _check_output(out: Path, model: Any, x: pd.DataFrame, *, proba: bool = True) -> pd.DataFrame:
    """The file holds the fitted model's own predictions, row for row, in input order."""
    got = pd.read_parquet(out)
    assert got["id"].tolist() == _ids(len(x))
    assert got["prediction"].tolist() == model.predict(x).tolist()
    columns = [f"proba_{c}" for c in model.classes_] if proba else []
    assert [c for c in got.columns if c.startswith("proba_")] == columns
    if proba:
        np.testing.assert_allclose(
            got[columns].to_numpy(), model.predict_proba(x), rtol=0, atol=1e-9
        )
    return got


@pytest.fixture
def iris_model(workspace: mc.Workspace) -> tuple[str, Any, pd.DataFrame]:
    x, y = _iris()
    model = LogisticRegression(max_iter=1000).fit(x, y)
    return _register(workspace, model, x, "iris"), model, x


@pytest.fixture
def iris_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "iris.parquet"
    path.parent.mkdir()
    _with_id(_iris()[0]).to_parquet(path, index=False)
    return path


# -- results ---------------------------------------------------------------------------------
@LOCAL_ONLY
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("which", ["iris", "cancer"])
def test_predictions_equal_the_models_own(
    workspace: mc.Workspace, tmp_path: Path, fmt: str, which: str
) -> None:
    x, y = _iris() if which == "iris" else _cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    ref = _register(workspace, model, x, which)
    source = tmp_path / f"in.{fmt}"
    frame = _with_id(x)
    if fmt == "csv":
        frame.to_csv(source, index=False)
    else:
        frame.to_parquet(source, index=False)
    out = tmp_path / "out" / "preds.parquet"  # the folder is created
    # small chunks over three threads: chunks finish out of order
    result = score(
        workspace.models, ref, source, out, chunk_rows=37, workers=3, include_columns=["id"]
    )
    assert result.rows == len(x) and result.chunks == -(-len(x) // 37)
    assert result.model == ref and result.output == out and result.source == str(source)
    assert result.columns == ("id", "prediction", *(f"proba_{c}" for c in model.classes_))
    assert result.executor == "local (3 threads)" and result.workers == 3
    assert result.to_dict()["rows"] == len(x)
    _check_output(out, model, x)
    assert [p.name for p in out.parent.iterdir()] == ["preds.parquet"]  # no temporary file
    lineage = pq.read_schema(out).metadata
    assert lineage[b"modelcycle.model"] == ref.encode()
    assert lineage[b"modelcycle.source"] == str(source).encode()
    manifest = workspace.models.resolve(ref).manifest_oid
    assert lineage[b"modelcycle.model_manifest"] == manifest.encode()


@LOCAL_ONLY
def test_order_is_kept_over_many_chunks_and_workers(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.normal(size=(20_000, 6)), columns=[f"f{i}" for i in range(6)])
    y = (x["f0"] + x["f1"] * x["f2"] > 0).astype("int64")
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    ref = _register(workspace, model, x, "forest")
    source = tmp_path / "in.parquet"
    _with_id(x).to_parquet(source, index=False, row_group_size=3_000)  # chunks span groups
    out = tmp_path / "preds.parquet"
    result = score(
        workspace.models, ref, source, out, chunk_rows=1_000, workers=4, include_columns=["id"]
    )
    assert result.chunks == 20
    _check_output(out, model, x)


@LOCAL_ONLY
def test_proba_only_for_classifiers_and_only_when_asked(
    workspace: mc.Workspace,
    tmp_path: Path,
    iris_model: tuple[str, Any, pd.DataFrame],
    iris_parquet: Path,
) -> None:
    ref, model, x = iris_model
    out = tmp_path / "plain.parquet"
    result = score(workspace.models, ref, iris_parquet, out, proba=False, include_columns=["id"])
    assert result.columns == ("id", "prediction")
    _check_output(out, model, x, proba=False)

    xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    ridge = Ridge().fit(xd, yd)
    source = tmp_path / "diabetes.parquet"
    xd.to_parquet(source, index=False)
    out = tmp_path / "ridge.parquet"
    ref = _register(workspace, ridge, xd, "ridge")
    result = score(workspace.models, ref, source, out, chunk_rows=100)
    assert result.columns == ("prediction",)  # a regressor: no probabilities
    got = pd.read_parquet(out)["prediction"].to_numpy()
    np.testing.assert_allclose(got, ridge.predict(xd), rtol=0, atol=1e-9)


@pytest.mark.parametrize("fmt", ["jsonl", "tsv", "csv.gz", "jsonl.gz"])
def test_text_formats_stream_the_same_rows(
    workspace: mc.Workspace, tmp_path: Path, iris_model: tuple[str, Any, pd.DataFrame], fmt: str
) -> None:
    ref, model, x = iris_model
    frame = _with_id(x)
    if fmt.startswith("jsonl"):
        text = frame.to_json(orient="records", lines=True)
    else:
        text = frame.to_csv(index=False, sep="\t" if fmt == "tsv" else ",")
    source = tmp_path / f"iris.{fmt}"
    data = text.encode()
    source.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
    out = tmp_path / "preds.parquet"
    result = score(workspace.models, ref, source, out, chunk_rows=40, include_columns=["id"])
    assert result.chunks == 4
    _check_output(out, model, x)


def test_a_table_version_is_scored_like_its_file(
    workspace: mc.Workspace, tmp_path: Path, iris_model: tuple[str, Any, pd.DataFrame]
) -> None:
    ref, model, x = iris_model
    source = tmp_path / "iris.csv"
    _with_id(x).to_csv(source, index=False)
    version = workspace.datasets.add("iris-data", source).version
    workspace.datasets.tag(version.ref, "scoring")
    for data in ("iris-data@1", "iris-data@scoring", "iris-data"):
        out = tmp_path / f"{data.replace('@', '-')}.parquet"
        result = score(
            workspace.models,
            ref,
            data,
            out,
            datasets=workspace.datasets,
            chunk_rows=64,
            include_columns=["id"],
        )
        assert result.source == "iris-data@1" and result.rows == len(x)
        _check_output(out, model, x)


@LOCAL_ONLY
def test_kept_columns_come_first_in_the_order_asked(
    workspace: mc.Workspace, tmp_path: Path, iris_model: tuple[str, Any, pd.DataFrame]
) -> None:
    ref, model, x = iris_model
    frame = _with_id(x)
    frame["name"] = [f"flower-{i}" for i in range(len(frame))]
    source = tmp_path / "iris.parquet"
    frame.to_parquet(source, index=False)
    out = tmp_path / "preds.parquet"
    keep = ["name", "petal_width", "id", "name"]  # a feature may be kept; repeats count once
    result = score(workspace.models, ref, source, out, chunk_rows=50, include_columns=keep)
    assert result.columns[:4] == ("name", "petal_width", "id", "prediction")
    got = _check_output(out, model, x)
    assert got["name"].tolist() == frame["name"].tolist()
    assert got["petal_width"].tolist() == frame["petal_width"].tolist()


@LOCAL_ONLY
def test_python_models_score_in_worker_processes(workspace: mc.Workspace, tmp_path: Path) -> None:
    x, _ = _iris()
    rule = Rule("petal_length", 2.5)
    ref = _register(
        workspace, rule, x, "rule", init_kwargs={"column": "petal_length", "cutoff": 2.5}
    )
    source = tmp_path / "iris.csv"
    _with_id(x).to_csv(source, index=False)
    out = tmp_path / "preds.parquet"
    with pytest.raises(UsageError, match="not trusted"):
        score(workspace.models, ref, source, out)
    assert not out.exists()
    result = score(
        workspace.models,
        ref,
        source,
        out,
        workers=2,
        chunk_rows=40,
        include_columns=["id"],
        trusted=[f"{__name__}.Rule"],
    )
    assert result.executor == "local (2 processes)"  # its predict holds the GIL
    got = pd.read_parquet(out)
    assert got.columns.tolist() == ["id", "prediction"]
    assert got["id"].tolist() == _ids(len(x))
    assert got["prediction"].tolist() == rule.predict(x).tolist()


@LOCAL_ONLY
def test_threads_share_the_cpus_with_blas_and_give_them_back(
    workspace: mc.Workspace, tmp_path: Path
) -> None:
    # each scoring thread calls BLAS; BLAS threads on top of them would oversubscribe the CPUs
    from threadpoolctl import threadpool_info

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    x, _ = _iris()
    ref = _register(workspace, BlasThreads(), x, "blas")
    source = tmp_path / "iris.parquet"
    x.to_parquet(source, index=False)
    before = blas()
    cpus = os.cpu_count() or 1
    for workers in (1, 2, cpus + 1):
        out = tmp_path / f"blas-{workers}.parquet"
        score(
            workspace.models,
            ref,
            source,
            out,
            workers=workers,
            pool="threads",
            chunk_rows=50,
            trusted=[f"{__name__}.BlasThreads"],
        )
        shared = pd.read_parquet(out)["prediction"]
        assert set(shared) == {min(max(before), max(1, cpus // workers))}  # never raised
        assert blas() == before  # restored afterwards


# -- bad input -------------------------------------------------------------------------------
@LOCAL_ONLY
def test_bad_input_is_refused_clearly_and_nothing_is_written(
    workspace: mc.Workspace,
    tmp_path: Path,
    iris_model: tuple[str, Any, pd.DataFrame],
    iris_parquet: Path,
) -> None:
    ref, _, x = iris_model
    frame = _with_id(x)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "preds.parquet"

    def refused(error: type[Exception], says: str, source: Any, **options: Any) -> None:
        with pytest.raises(error) as caught:
            score(workspace.models, ref, source, out, **options)
        assert says in str(caught.value), str(caught.value)
        assert list(out_dir.iterdir()) == []  # no output, no temporary file

    refused(NotFoundError, "no file", tmp_path / "missing.csv")
    refused(NotFoundError, "no dataset named 'missing'", "missing@1")
    (tmp_path / "book.xlsx").write_bytes(b"PK")
    refused(UsageError, "cannot stream book.xlsx", tmp_path / "book.xlsx")
    refused(UsageError, "is a folder", tmp_path / "data")
    refused(UsageError, "chunk_rows must be at least 1", iris_parquet, chunk_rows=0)
    refused(UsageError, "unknown pool", iris_parquet, pool="fibers")
    refused(
        UsageError,
        "cannot keep a column named 'prediction'",
        iris_parquet,
        include_columns=["prediction"],
    )
    refused(InputDataError, "no column 'row_id' to keep", iris_parquet, include_columns=["row_id"])

    missing = tmp_path / "missing-column.parquet"
    frame.drop(columns=["petal_width", "sepal_width"]).to_parquet(missing)
    refused(InputDataError, "missing column 'sepal_width'; missing column 'petal_width'", missing)

    mistyped = tmp_path / "mistyped.parquet"
    frame.assign(petal_width=frame["petal_width"].astype(str)).to_parquet(mistyped)
    refused(InputDataError, "column 'petal_width' should be float64 but is string", mistyped)

    bad_value = tmp_path / "bad-value.csv"
    text = frame.astype({"petal_width": object})
    text.loc[120, "petal_width"] = "wide"
    text.to_csv(bad_value, index=False)
    refused(InputDataError, "cannot read column 'petal_width' of", bad_value, chunk_rows=40)

    with_nan = tmp_path / "nan.parquet"
    frame.assign(petal_width=frame["petal_width"].where(frame.index != 50)).to_parquet(with_nan)
    refused(InputDataError, "the model failed on rows 41-80", with_nan, chunk_rows=40)

    header_only = tmp_path / "empty.csv"
    header_only.write_text(",".join(frame.columns) + "\n")
    refused(InputDataError, "has no rows", header_only)

    with pytest.raises(UsageError, match="is not a parquet file"):
        score(workspace.models, ref, iris_parquet, out_dir / "preds.csv")

    # an existing output is kept unless overwrite is asked for
    out.write_bytes(b"keep me")
    with pytest.raises(ConflictError, match="exists"):
        score(workspace.models, ref, iris_parquet, out)
    assert out.read_bytes() == b"keep me"
    score(workspace.models, ref, iris_parquet, out, overwrite=True)
    assert len(pd.read_parquet(out)) == len(x)


@LOCAL_ONLY
def test_progress_counts_every_row(
    workspace: mc.Workspace,
    tmp_path: Path,
    iris_model: tuple[str, Any, pd.DataFrame],
    iris_parquet: Path,
) -> None:
    ref, _, x = iris_model

    class Recorder:
        def __init__(self) -> None:
            self.tasks: list[tuple[str, float | None]] = []
            self.done = 0.0

        def task(self, description: str, total: float | None = None) -> None:
            self.tasks.append((description, total))

        def advance(self, amount: float = 1) -> None:
            self.done += amount

    bar = Recorder()
    score(workspace.models, ref, iris_parquet, tmp_path / "p.parquet", chunk_rows=16, progress=bar)
    assert bar.tasks == [(f"scoring {iris_parquet} with {ref}", len(x))]
    assert bar.done == len(x)


# -- Ray -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    import ray  # a dev dependency: CI installs it, so this test never skips

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@LOCAL_ONLY
def test_ray_actors_score_the_same_rows(
    local_ray: Any, workspace: mc.Workspace, tmp_path: Path
) -> None:
    x, y = _cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    ref = _register(workspace, model, x, "cancer")
    source = tmp_path / "cancer.parquet"
    _with_id(x).to_parquet(source, index=False)
    out = tmp_path / "preds.parquet"
    result = score(
        workspace.models, ref, source, out, executor="ray", chunk_rows=50, include_columns=["id"]
    )
    assert result.executor.startswith("ray") and result.workers == 2
    assert result.chunks == -(-len(x) // 50)
    _check_output(out, model, x)

    # a failure inside an actor arrives as the same clear error, and nothing is written
    with_nan = tmp_path / "nan.parquet"
    frame = _with_id(x)
    frame.loc[120, "mean_radius"] = np.nan
    frame.to_parquet(with_nan, index=False)
    failed = tmp_path / "failed.parquet"
    with pytest.raises(InputDataError, match="rows 101-150"):
        score(workspace.models, ref, with_nan, failed, executor="ray", chunk_rows=50)
    assert not failed.exists()


# -- the command -----------------------------------------------------------------------------
@LOCAL_ONLY
def test_the_predict_command(
    workspace: mc.Workspace,
    tmp_path: Path,
    iris_model: tuple[str, Any, pd.DataFrame],
    iris_parquet: Path,
) -> None:
    ref, model, x = iris_model
    app = typer.Typer()
    app.command("predict")(predict)

    @app.callback()
    def _root() -> None:
        """A throwaway app: `predict` stays a sub-command."""

    env = {"MODELCYCLE_WORKSPACE": str(workspace.root)}
    out = tmp_path / "preds.parquet"
    args = ["predict", ref, "--input", str(iris_parquet), "--output", str(out), "--keep", "id"]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--chunk-rows", "50", "--workers", "2", "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["rows"] == len(x) and shown["chunks"] == 3 and shown["model"] == ref
    assert shown["output"] == str(out) and shown["rows_per_second"] > 0
    _check_output(out, model, x)

    again = runner.invoke(app, args, env=env)
    assert isinstance(again.exception, ConflictError) and again.exit_code != 0

    text = runner.invoke(app, [*args, "--overwrite", "--no-proba"], env=env)
    assert text.exit_code == 0, text.output
    assert f"Scored 150 rows of {iris_parquet} with {ref}" in text.stdout
    assert "rows/s" in text.stdout and "id, prediction" in text.stdout
    _check_output(out, model, x, proba=False)


# -- parts: chunking, ordering, reading ahead, formats, outputs -------------------------------
def _numbers(start: int, stop: int) -> pa.RecordBatch:
    return pa.record_batch({"n": pa.array(range(start, stop), pa.int64())})


def test_rechunk_makes_equal_chunks_in_order() -> None:
    sizes = [7, 3, 0, 12, 5, 1]
    edges = np.cumsum([0, *sizes])
    batches = [_numbers(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    chunks = list(batch._rechunk(batches, 5, "numbers"))
    assert [c.num_rows for c in chunks] == [5, 5, 5, 5, 5, 3]
    assert [v for c in chunks for v in c.column("n").to_pylist()] == list(range(28))
    assert list(batch._rechunk([], 5, "numbers")) == []


def test_parquet_is_read_a_row_group_at_a_time(tmp_path: Path) -> None:
    # 8 row groups of 8 MB: reading holds one and a read buffer per column (about 20 MB),
    # never the whole file (pre-buffering it would take 85 MB)
    rng = np.random.default_rng(0)
    table = pa.table({f"f{i}": rng.normal(size=400_000) for i in range(20)})
    path = tmp_path / "wide.parquet"
    pq.write_table(table, path, row_group_size=50_000, compression="none")
    del table
    reader = batch._ParquetReader([path], "wide.parquet")
    base = pa.total_allocated_bytes()
    peak = rows = 0
    for part in reader.batches([f"f{i}" for i in range(20)], {}, 10_000):
        rows += part.num_rows
        peak = max(peak, pa.total_allocated_bytes() - base)
        del part
    assert rows == 400_000
    assert peak < 48 << 20, f"{peak >> 20} MB held while reading a 64 MB file"


class FakeRunner:
    """Records how many chunks are in flight; results are the chunks' first rows."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.in_flight = 0
        self.most = 0

    def submit(self, chunk: pa.Table, first_row: int) -> int:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        return first_row

    def result(self, handle: int) -> pa.Table:
        self.in_flight -= 1
        return pa.table({"first": [handle]})


def test_ordered_keeps_order_and_bounds_what_is_in_flight() -> None:
    runner = FakeRunner(workers=3)
    chunks = ((pa.table({"n": [i]}), i * 10) for i in range(50))
    results = [t.column("first")[0].as_py() for t in batch._ordered(runner, chunks)]  # type: ignore[arg-type]
    assert results == [i * 10 for i in range(50)]
    assert runner.most == 6  # two chunks per worker, never the whole input


def test_read_ahead_keeps_order_reads_a_bounded_distance_and_passes_errors_on() -> None:
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            if i == 7:
                raise InputDataError("bad row 7", hint="")
            yield i

    seen: list[int] = []
    reader = batch._read_ahead(items(), 2)
    with pytest.raises(InputDataError, match="bad row 7"):
        for item in reader:
            seen.append(item)
            assert len(pulled) <= len(seen) + 2
    assert seen == list(range(7))


def test_read_ahead_stops_reading_when_the_consumer_stops() -> None:
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            pulled.append(i)
            yield i

    reader = batch._read_ahead(items(), 3)
    assert [next(reader), next(reader)] == [0, 1]
    reader.close()
    assert len(pulled) <= 6


class NoDatasets:
    """Stands in for the dataset service: every ref is unknown."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def resolve(self, ref: str) -> Any:
        self.asked.append(ref)
        raise NotFoundError(f"no dataset named {ref!r}", hint="")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.csv", batch._CsvReader),
        ("a.TSV", batch._CsvReader),
        ("a.csv.gz", batch._CsvReader),
        ("a.jsonl", batch._JsonLinesReader),
        ("a.ndjson.zst", batch._JsonLinesReader),
        ("a.parquet", batch._ParquetReader),
    ],
)
def test_files_are_read_by_their_suffix(tmp_path: Path, name: str, kind: type) -> None:
    path = tmp_path / name
    if kind is batch._ParquetReader:
        pd.DataFrame({"x": [1.0]}).to_parquet(path)
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress(b"x\n1\n"))
    else:
        path.write_bytes(b"x\n1\n")
    assert isinstance(batch._open_source(path, NoDatasets()), kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a.xlsx", "a.json", "a.txt", "a.parquet.gz", "a"])
def test_other_files_are_refused_with_a_way_forward(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"data")
    with pytest.raises(UsageError) as err:
        batch._open_source(tmp_path / name, NoDatasets())  # type: ignore[arg-type]
    assert "dataset add" in str(err.value.hint)


def test_refs_and_missing_files_are_told_apart(tmp_path: Path) -> None:
    datasets = NoDatasets()
    for ref in ("sales@3", "sales", "sales.v2@latest"):
        with pytest.raises(NotFoundError, match="no dataset named"):
            batch._open_source(ref, datasets)  # type: ignore[arg-type]
    assert datasets.asked == ["sales@3", "sales", "sales.v2@latest"]
    for missing in (tmp_path / "sales.csv", "data/sales", "sales.parquet"):
        with pytest.raises(NotFoundError, match="no file"):
            batch._open_source(missing, datasets)  # type: ignore[arg-type]
    assert len(datasets.asked) == 3


def test_outputs_are_new_parquet_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a parquet file"):
        batch._check_output(tmp_path / "out.csv", overwrite=False)
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(ConflictError, match="is a folder"):
        batch._check_output(tmp_path / "dir.parquet", overwrite=True)
    (tmp_path / "old.parquet").write_bytes(b"")
    with pytest.raises(ConflictError, match="--overwrite"):
        batch._check_output(tmp_path / "old.parquet", overwrite=False)
    assert batch._check_output(tmp_path / "old.parquet", overwrite=True).name == "old.parquet"
    assert batch._check_output(tmp_path / "new.pq", overwrite=False).name == "new.pq"


# -- parts: the scorer ------------------------------------------------------------------------
def _loaded(tmp_path: Path, model: Any, example: Any = None) -> Any:
    return load_package(save_package(model, tmp_path / "pkg", input_example=example).path)


def test_the_scorer_names_probabilities_by_class_and_keeps_columns(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True, as_frame=True)
    names = y.map(dict(enumerate(load_iris().target_names)))
    model = LogisticRegression(max_iter=1000).fit(x, names)
    loaded = _loaded(tmp_path, model, x.head(2))
    plan = batch._plan(loaded, list(x.columns), ["id"], True, "iris")
    assert plan.inputs == tuple(x.columns) and plan.proba_names == (
        "proba_setosa",
        "proba_versicolor",
        "proba_virginica",
    )
    chunk = pa.Table.from_pandas(x.iloc[10:20].assign(id=range(10)), preserve_index=False)
    out = batch._Scorer(loaded, plan)(chunk, 10)
    assert out.column_names == ["id", "prediction", *plan.proba_names]
    assert out.column("id").to_pylist() == list(range(10))
    assert out.column("prediction").to_pylist() == model.predict(x.iloc[10:20]).tolist()


def test_a_model_without_a_signature_takes_every_column_not_kept(tmp_path: Path) -> None:
    x = np.arange(12, dtype=float).reshape(6, 2)
    model = LinearRegression().fit(x, np.column_stack([x.sum(axis=1), -x[:, 0]]))
    loaded = _loaded(tmp_path, model)
    assert loaded.signature is None
    plan = batch._plan(loaded, ["a", "id", "b"], ["id"], True, "data")
    assert plan.inputs == ("a", "b") and not plan.proba
    chunk = pa.table({"a": x[:, 0], "id": range(6), "b": x[:, 1]})
    out = batch._Scorer(loaded, plan)(chunk, 0)
    # two outputs per row: one fixed-size list per row
    assert out.schema.field("prediction").type == pa.list_(pa.float64(), 2)
    np.testing.assert_allclose(np.array(out.column("prediction").to_pylist()), model.predict(x))
    with pytest.raises(UsageError, match="no named inputs"):
        batch._plan(loaded, None, [], True, "lines.jsonl")


def test_a_failing_model_names_the_rows(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True, as_frame=True)
    loaded = _loaded(tmp_path, LogisticRegression(max_iter=1000).fit(x, y), x.head(2))
    plan = batch._plan(loaded, list(x.columns), [], False, "iris")
    bad = x.iloc[:5].copy()
    bad.iloc[2, 0] = np.nan
    with pytest.raises(InputDataError) as err:
        batch._Scorer(loaded, plan)(pa.Table.from_pandas(bad, preserve_index=False), 100)
    # the first line of what the model said, not its page of advice
    assert (
        err.value.message == "the model failed on rows 101-105: ValueError: Input X contains NaN."
    )


@pytest.mark.parametrize(
    "arrow",
    [
        pa.bool_(),
        pa.int8(),
        pa.uint32(),
        pa.int64(),
        pa.float16(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.large_string(),
        pa.binary(),
        pa.binary(4),
        pa.dictionary(pa.int32(), pa.string()),
        pa.dictionary(pa.int8(), pa.large_string()),
        pa.dictionary(pa.int32(), pa.int64()),
        pa.timestamp("us"),
        pa.timestamp("ns", "UTC"),
        pa.date32(),
        pa.date64(),
        pa.duration("ms"),
        pa.time64("us"),
        pa.decimal128(10, 2),
        pa.list_(pa.float64()),
        pa.null(),
    ],
    ids=str,
)
def test_column_types_are_read_off_the_arrow_schema_as_from_a_frame(arrow: pa.DataType) -> None:
    # chunks are checked against the signature without making a frame: the same dtype names
    import polars as pl

    from modelcycle.flavors.signature import describe

    _, specs = describe(pl.from_arrow(pa.schema([("c", arrow)]).empty_table()))
    assert batch._signature_dtype(arrow) == specs[0].dtype


def test_float_inputs_make_the_same_frame_as_to_pandas() -> None:
    schema = pa.schema([("b", pa.float64()), ("a", pa.float64())])
    parts = [
        pa.record_batch({"b": [1.0, None, 3.0], "a": [4.0, 5.0, np.nan]}, schema=schema),
        pa.record_batch({"b": [7.0], "a": [None]}, schema=schema),
    ]
    table = pa.Table.from_batches(parts)  # two chunks per column, nulls in both
    frame = batch._frame(table)
    pd.testing.assert_frame_equal(frame, table.to_pandas())
    assert frame.to_numpy().flags.f_contiguous  # scikit-learn takes it without a copy
    mixed = pa.table({"n": pa.array([1, None], pa.int64()), "x": [0.5, 1.5]})
    pd.testing.assert_frame_equal(batch._frame(mixed), mixed.to_pandas())


@LOCAL_ONLY
def test_loading_a_scikit_learn_model_does_not_import_torch(
    workspace: mc.Workspace,
    tmp_path: Path,
    iris_model: tuple[str, Any, pd.DataFrame],
    iris_parquet: Path,
) -> None:
    # skops lists scikit-learn's estimators by importing every package of scikit-learn,
    # the array-API adapter for PyTorch among them; that import (seconds) is skipped
    ref, _, _ = iris_model
    code = (
        "import sys\n"
        "import modelcycle as mc\n"
        "from modelcycle.deploy.batch import score\n"
        f"ws = mc.Workspace.open({str(workspace.root)!r})\n"
        f"score(ws.models, {ref!r}, {str(iris_parquet)!r}, {str(tmp_path / 'o.parquet')!r})\n"
        "ws.close()\n"
        "import skops.io._trusted_types as trusted\n"
        "print(sorted(m for m in sys.modules if m.split('.')[-1] == 'torch'))\n"
        "print('sklearn.linear_model._logistic.LogisticRegression'"
        " in trusted.SKLEARN_ESTIMATOR_TYPE_NAMES)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr
    # not imported, and no marker left behind: a later import would work as usual
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
