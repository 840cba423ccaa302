"""ONNX export of registered versions, and MLflow model folders imported into the registry.

MLflow is not a dependency: the fixtures write MLflow model folders the way MLflow 3.x does
(``MLmodel`` YAML with the flavors, the signature as JSON strings and the input example's
info; ``input_example.json`` in pandas' split form; the requirements files), checked against
folders written by ``mlflow.sklearn.save_model`` and ``mlflow.xgboost.save_model``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
import typer
import xgboost as xgb
import yaml
from integration_support import LOCAL
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import modelcycle as mc
from modelcycle.cli.model_interop import export_cmd, import_mlflow_cmd
from modelcycle.core.errors import ConflictError, InputDataError, ModelcycleError, UsageError
from modelcycle.flavors.mlflow_format import convert_signature, read_mlflow_model
from modelcycle.registry.interop import EXPERIMENT, export_model, import_mlflow

# Storage is the same as for any registered model: the embedded backend is enough here.
EMBEDDED = pytest.mark.parametrize("backend", [LOCAL], indirect=True)
MLFLOW_RUN = "8c6822bbf3db458f8afa932a3defc1b2"


class MLP(torch.nn.Module):
    def __init__(self, in_features: int, classes: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(in_features, 16), torch.nn.ReLU(), torch.nn.Linear(16, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- MLflow folders, by hand


def _columns_schema(frame: pd.DataFrame) -> str:
    return json.dumps([{"type": "double", "name": str(c), "required": True} for c in frame.columns])


def _write_mlflow(
    folder: Path,
    flavors: dict[str, Any],
    *,
    example: pd.DataFrame | None = None,
    outputs: str = '[{"type": "long", "required": true}]',
    run_id: str | None = MLFLOW_RUN,
) -> Path:
    """The files MLflow 3.x writes beside the model file(s)."""
    folder.mkdir(parents=True, exist_ok=True)
    mlmodel: dict[str, Any] = {
        "flavors": flavors,
        "mlflow_version": "3.1.0",
        "model_size_bytes": 1234,
        "model_uuid": "6a45d5b2cb384af2aa82aa7b33b54bbb",
        "utc_time_created": "2025-06-01 10:00:00.000000",
    }
    if run_id:
        mlmodel["run_id"] = run_id
        mlmodel["artifact_path"] = "model"
    if example is not None:
        mlmodel["signature"] = {
            "inputs": _columns_schema(example),
            "outputs": outputs,
            "params": None,
        }
        mlmodel["saved_input_example_info"] = {
            "artifact_path": "input_example.json",
            "pandas_orient": "split",
            "serving_input_path": "serving_input_example.json",
            "type": "dataframe",
        }
        split = {"columns": list(example.columns), "data": example.to_numpy().tolist()}
        (folder / "input_example.json").write_text(json.dumps(split))
        (folder / "serving_input_example.json").write_text(json.dumps({"dataframe_split": split}))
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (folder / "requirements.txt").write_text("mlflow==3.1.0\nnumpy==2.2.6\nscikit-learn==1.7.0\n")
    (folder / "conda.yaml").write_text(
        "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip:\n  - mlflow==3.1.0\n"
        "name: mlflow-env\n"
    )
    (folder / "python_env.yaml").write_text(
        "python: 3.11.7\ndependencies:\n- -r requirements.txt\n"
    )
    return folder


def _pyfunc(loader: str, **extra: Any) -> dict[str, Any]:
    return {
        "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
        "loader_module": loader,
        "python_version": "3.11.7",
        **extra,
    }


def mlflow_sklearn(
    folder: Path, model: Any, example: pd.DataFrame, fmt: str = "cloudpickle"
) -> Path:
    """``mlflow.sklearn.save_model(model, folder, serialization_format=fmt)``."""
    file = "model.skops" if fmt == "skops" else "model.pkl"
    folder.mkdir(parents=True)
    if fmt == "skops":
        import skops.io as sio

        sio.dump(model, folder / file)
    else:
        # cloudpickle pickles importable classes by reference, as pickle does: same bytes
        with (folder / file).open("wb") as f:
            pickle.dump(model, f)
    flavors = {
        "python_function": _pyfunc("mlflow.sklearn", model_path=file, predict_fn="predict"),
        "sklearn": {
            "code": None,
            "pickled_model": file,
            "serialization_format": fmt,
            "sklearn_version": "1.7.0",
            "skops_trusted_types": None,
        },
    }
    return _write_mlflow(folder, flavors, example=example)


def mlflow_xgboost(folder: Path, model: Any, example: pd.DataFrame) -> Path:
    """``mlflow.xgboost.save_model(model, folder)`` (UBJSON, the default since MLflow 2.12)."""
    folder.mkdir(parents=True)
    model.save_model(folder / "model.ubj")
    flavors = {
        "python_function": _pyfunc("mlflow.xgboost", data="model.ubj"),
        "xgboost": {
            "code": None,
            "data": "model.ubj",
            "model_class": f"xgboost.sklearn.{type(model).__name__}",
            "model_format": "ubj",
            "xgb_version": xgb.__version__,
        },
    }
    return _write_mlflow(folder, flavors, example=example)


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    return x, y


@pytest.fixture(scope="module")
def pipeline(iris: tuple[pd.DataFrame, pd.Series]) -> Any:
    x, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


def _untouched(ws: mc.Workspace) -> None:
    """No model was registered, and no import run finished."""
    assert ws.models.models() == []
    if EXPERIMENT in [e["name"] for e in ws.runs.experiments()]:
        assert {r.status for r in ws.runs.search(EXPERIMENT)} <= {"failed"}


# ------------------------------------------------------------------------ MLflow import


@EMBEDDED
def test_import_pickled_sklearn_needs_trust(
    workspace: mc.Workspace, tmp_path: Path, iris: Any, pipeline: Any
) -> None:
    ws = workspace
    x, _ = iris
    folder = mlflow_sklearn(tmp_path / "mlflow-model", pipeline, x.head(3))
    with pytest.raises(UsageError, match="pickled with cloudpickle") as refused:
        import_mlflow(ws.models, folder, "iris")
    assert "--trust" in (refused.value.hint or "")
    _untouched(ws)

    v = import_mlflow(ws.models, folder, "iris", trusted=True)
    assert (v.ref, v.flavor, v.needs_trust) == ("iris@1", "sklearn", [])
    assert v.signature is not None and v.signature["kind"] == "columns"
    assert [s["name"] for s in v.signature["inputs"]] == list(x.columns)
    # stored with skops: loading it needs no trust, and it predicts what the original does
    loaded = ws.models.load("iris@1")
    assert loaded.info.flavor_meta["file"] == "model.skops"
    np.testing.assert_array_equal(loaded.predict(x), pipeline.predict(x))
    pd.testing.assert_frame_equal(loaded.input_example(), x.head(3))

    [run] = ws.runs.search(EXPERIMENT)
    assert run.status == "finished" and v.run_id == run.id
    assert run.tags["mlflow.run_id"] == MLFLOW_RUN
    assert run.tags["mlflow.source"] == str(folder.resolve())
    assert run.tags["mlflow.trusted"] == "true"
    stored = [p for p, _ in run.artifacts()]
    assert "mlflow/MLmodel" in stored and "mlflow/requirements.txt" in stored
    assert not any(p.endswith(".pkl") for p in stored)

    again = import_mlflow(ws.models, folder, "iris", trusted=True)
    assert again.ref == "iris@2"


@EMBEDDED
def test_import_skops_and_xgboost_need_no_trust(
    workspace: mc.Workspace, tmp_path: Path, iris: Any, pipeline: Any
) -> None:
    ws = workspace
    x, _ = iris
    skops_folder = mlflow_sklearn(tmp_path / "skops", pipeline, x.head(3), fmt="skops")
    v = import_mlflow(ws.models, skops_folder, "iris")
    np.testing.assert_array_equal(ws.models.load(v.ref).predict(x), pipeline.predict(x))

    cx, cy = load_breast_cancer(return_X_y=True, as_frame=True)
    booster = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(cx, cy)
    v = import_mlflow(ws.models, mlflow_xgboost(tmp_path / "xgb", booster, cx.head(2)), "cancer")
    assert (v.ref, v.flavor, v.needs_trust) == ("cancer@1", "xgboost", [])
    loaded = ws.models.load("cancer@1")
    np.testing.assert_array_equal(loaded.predict(cx), booster.predict(cx))
    np.testing.assert_allclose(loaded.predict_proba(cx), booster.predict_proba(cx), rtol=1e-6)


@EMBEDDED
def test_bad_mlflow_folders_leave_the_registry_unchanged(
    workspace: mc.Workspace, tmp_path: Path, iris: Any, pipeline: Any
) -> None:
    ws = workspace
    x, _ = iris
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputDataError, match="has no MLmodel file"):
        import_mlflow(ws.models, empty, "iris")

    lgbm = _write_mlflow(
        tmp_path / "lgbm", {"lightgbm": {"data": "model.lgb"}, "python_function": _pyfunc("x")}
    )
    with pytest.raises(UsageError, match=r"no flavor modelcycle can import \(it has: lightgbm"):
        import_mlflow(ws.models, lgbm, "iris")

    pyfunc = _write_mlflow(
        tmp_path / "pyfunc",
        {"python_function": _pyfunc("mlflow.pyfunc.model", python_model="python_model.pkl")},
    )
    with pytest.raises(UsageError, match="only the python_function flavor") as only:
        import_mlflow(ws.models, pyfunc, "iris", trusted=True)
    assert "mlflow.sklearn" in (only.value.hint or "")

    missing = mlflow_sklearn(tmp_path / "missing", pipeline, x.head(3))
    (missing / "model.pkl").unlink()
    with pytest.raises(InputDataError, match=r"model\.pkl named in MLmodel is missing"):
        import_mlflow(ws.models, missing, "iris", trusted=True)

    foreign = mlflow_sklearn(tmp_path / "foreign", pipeline, x.head(3))
    # a pickle of a class from a package that is not installed here
    (foreign / "model.pkl").write_bytes(b"cnot_installed_pkg.models\nModel\n)\x81.")
    with pytest.raises(UsageError, match="needs the module 'not_installed_pkg'"):
        import_mlflow(ws.models, foreign, "iris", trusted=True)

    escape = mlflow_sklearn(tmp_path / "escape", pipeline, x.head(3))
    meta = yaml.safe_load((escape / "MLmodel").read_text())
    meta["flavors"]["sklearn"]["pickled_model"] = "../missing/conda.yaml"
    (escape / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(InputDataError, match="outside the model folder"):
        import_mlflow(ws.models, escape, "iris", trusted=True)

    good = mlflow_sklearn(tmp_path / "good", pipeline, x.head(3))
    with pytest.raises(UsageError, match="model name"):
        import_mlflow(ws.models, good, "bad name!", trusted=True)
    _untouched(ws)


@EMBEDDED
def test_a_failure_while_registering_leaves_no_version(
    workspace: mc.Workspace, tmp_path: Path, iris: Any, pipeline: Any, monkeypatch: Any
) -> None:
    ws = workspace
    x, _ = iris
    folder = mlflow_sklearn(tmp_path / "m", pipeline, x.head(3), fmt="skops")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConflictError("the store went away", hint="try again")

    monkeypatch.setattr(ws.models, "register", broken)
    with pytest.raises(ConflictError):
        import_mlflow(ws.models, folder, "iris")
    monkeypatch.undo()
    _untouched(ws)
    [run] = ws.runs.search(EXPERIMENT)
    assert run.status == "failed" and "the store went away" in (run.error or "")


def test_mlflow_signatures_convert() -> None:
    columns = convert_signature(
        {
            "inputs": '[{"type": "double", "name": "a", "required": true}, '
            '{"type": "string", "name": "b", "required": true}, '
            '{"type": "long", "name": "c", "required": false}]',
            "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
        }
    )
    assert columns is not None and columns.kind == "columns"
    assert [(s.name, s.dtype) for s in columns.inputs] == [
        ("a", "float64"),
        ("b", "string"),
        ("c", "int64"),
    ]
    assert [(s.name, s.dtype, s.shape) for s in columns.outputs] == [("prediction", "int64", (-1,))]
    tensor = convert_signature(
        {
            "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]}}]'
        }
    )
    assert tensor is not None and tensor.kind == "tensor"
    assert (tensor.inputs[0].dtype, tensor.inputs[0].shape) == ("float32", (-1, 28, 28))
    # what modelcycle cannot express is left to inference from the input example
    assert convert_signature({"inputs": '[{"type": "double"}, {"type": "double"}]'}) is None
    assert convert_signature(None) is None


def test_reader_accepts_the_mlmodel_file_and_ndarray_examples(
    tmp_path: Path, iris: Any, pipeline: Any
) -> None:
    x, _ = iris
    folder = mlflow_sklearn(tmp_path / "m", pipeline, x.head(3), fmt="pickle")
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    meta["signature"] = {
        "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]',
        "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
    }
    meta["saved_input_example_info"] = {
        "artifact_path": "input_example.json",
        "serving_input_path": "serving_input_example.json",
        "type": "ndarray",
    }
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    (folder / "input_example.json").write_text(json.dumps(x.head(2).to_numpy().tolist()))
    model = read_mlflow_model(folder / "MLmodel")
    assert (model.flavor, model.run_id, model.needs_trust) == ("sklearn", MLFLOW_RUN, True)
    assert model.requirements == ("mlflow==3.1.0", "numpy==2.2.6", "scikit-learn==1.7.0")
    example = model.input_example()
    assert isinstance(example, np.ndarray) and example.shape == (2, 4)
    assert example.dtype == np.float64


# ------------------------------------------------------------------------ ONNX export


@EMBEDDED
def test_export_sklearn_versions_to_onnx(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    models = {
        "forest": RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y),
        "scaled": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y),
    }
    with ws.start_run("onnx") as run:
        for name, model in models.items():
            run.log_model(model, name, input_example=x.head(3), register_as=name)
    folder = tmp_path / "exported"
    folder.mkdir()
    for name, model in models.items():
        out = export_model(ws.models, f"{name}@latest", folder)
        assert out == folder / f"{name}-v1.onnx"
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        labels, probabilities = session.run(None, {"input": x.to_numpy(np.float32)})
        np.testing.assert_array_equal(labels, model.predict(x))
        np.testing.assert_allclose(probabilities, model.predict_proba(x), rtol=0, atol=1e-5)
        props = session.get_modelmeta().custom_metadata_map
        assert props["modelcycle.ref"] == f"{name}@1"
        assert json.loads(props["modelcycle.signature"])["kind"] == "columns"
    assert sorted(p.name for p in folder.iterdir()) == ["forest-v1.onnx", "scaled-v1.onnx"]


@EMBEDDED
@pytest.mark.slow  # torch.onnx's exporter takes a few seconds
def test_export_torch_version_to_onnx(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    torch.manual_seed(0)
    net = MLP(4, 3).eval()
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    with ws.start_run("onnx") as run:
        run.log_model(
            net,
            "mlp",
            input_example=x[:2],
            init_kwargs={"in_features": 4, "classes": 3},
            register_as="mlp",
        )
    with pytest.raises(UsageError, match="not trusted"):
        export_model(ws.models, "mlp@1", tmp_path / "mlp.onnx")
    out = export_model(ws.models, "mlp@1", tmp_path / "mlp.onnx", trusted=[f"{__name__}.*"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    [got] = session.run(None, {"input": x})
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


@EMBEDDED
def test_export_errors_write_nothing(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    with ws.start_run("onnx") as run:
        run.log_model(xgb.XGBClassifier(n_estimators=5).fit(x, y), "xgb", register_as="xgb")
        run.log_model(StandardScaler().fit(x), "scaler", register_as="scaler")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UsageError, match="does not support the xgboost flavor") as flavor:
        export_model(ws.models, "xgb@1", out)
    assert "sklearn, pytorch" in (flavor.value.hint or "")
    with pytest.raises(UsageError, match=r"unknown export format 'onxx' \(did you mean 'onnx'"):
        export_model(ws.models, "scaler@1", out, "onxx")
    assert not any(out.iterdir())
    (out / "scaler.onnx").write_bytes(b"keep me")
    with pytest.raises(ConflictError, match="exists already"):
        export_model(ws.models, "scaler@1", out / "scaler.onnx")
    assert (out / "scaler.onnx").read_bytes() == b"keep me"
    assert [p.name for p in out.iterdir()] == ["scaler.onnx"]


# ------------------------------------------------------------------------ CLI


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("export")(export_cmd)
    app.command("import-mlflow")(import_mlflow_cmd)
    return app


@EMBEDDED
def test_cli_import_and_export(
    workspace: mc.Workspace, tmp_path: Path, iris: Any, pipeline: Any, monkeypatch: Any
) -> None:
    ws = workspace
    x, _ = iris
    monkeypatch.setenv("MODELCYCLE_WORKSPACE", str(ws.root))
    folder = mlflow_sklearn(tmp_path / "mlflow-model", pipeline, x.head(3))
    runner = CliRunner()
    app = _cli()

    refused = runner.invoke(app, ["import-mlflow", str(folder), "--name", "iris"])
    assert isinstance(refused.exception, ModelcycleError)
    assert "--trust" in (refused.exception.hint or "")
    _untouched(ws)

    done = runner.invoke(app, ["import-mlflow", str(folder), "--name", "iris", "--trust", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["ref"] == "iris@1"
    text = runner.invoke(app, ["import-mlflow", str(folder), "--name", "iris", "--trust"])
    assert text.exit_code == 0 and text.stdout.startswith(f"Imported {folder} as iris@2 (sklearn)")

    target = tmp_path / "iris.onnx"
    exported = runner.invoke(app, ["export", "iris@1", "--format", "onnx", "-o", str(target)])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.strip() == f"Exported iris@1 (sklearn) as onnx to {target}."
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    [labels] = session.run(["label"], {"input": x.to_numpy(np.float32)})
    np.testing.assert_array_equal(labels, pipeline.predict(x))

    as_json = runner.invoke(app, ["export", "iris@2", "-o", str(tmp_path), "--json"])
    assert json.loads(as_json.stdout) == {
        "ref": "iris@2",
        "format": "onnx",
        "path": str(tmp_path / "iris-v2.onnx"),
    }
    bad = runner.invoke(app, ["export", "iris@1", "--format", "pmml"])
    assert isinstance(bad.exception, UsageError) and "formats: onnx" in (bad.exception.hint or "")
