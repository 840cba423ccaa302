"""ONNX: converting scikit-learn and PyTorch packages, and the onnx flavor that runs them.

onnx, onnxruntime, skl2onnx and torch are dev dependencies: a missing install fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.flavors import LoadedModel, flavor_for, load_package, save_package
from modelcycle.flavors.onnx import embedded_signature, to_onnx

TRUST = [f"{__name__}.*"]


class MLP(torch.nn.Module):
    def __init__(self, in_features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(in_features, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


class Doubler(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A custom step skl2onnx has no converter for."""

    def fit(self, x: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, x: Any) -> Any:
        return np.asarray(x) * 2


def _iris() -> tuple[pd.DataFrame, pd.Series]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    return x, y


def _package(tmp_path: Path, model: Any, example: Any, **options: Any) -> LoadedModel:
    save_package(model, tmp_path / "native", input_example=example, **options)
    return load_package(tmp_path / "native", trusted=TRUST)


def _session(graph: Any) -> Any:
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def _assert_same_as_native(graph: Any, model: Any, x: Any, feeds: dict[str, Any]) -> None:
    labels, probabilities = _session(graph).run(["label", "probabilities"], feeds)
    np.testing.assert_array_equal(labels, model.predict(x))
    np.testing.assert_allclose(probabilities, model.predict_proba(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRegression(max_iter=1000),
        lambda: RandomForestClassifier(n_estimators=20, random_state=0),
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    ],
    ids=["logistic_regression", "random_forest", "scaler_pipeline"],
)
def test_sklearn_classifiers_on_a_frame(tmp_path: Path, make: Any) -> None:
    x, y = _iris()
    model = make().fit(x, y)
    graph = to_onnx(_package(tmp_path, model, x.head(3)), ref="iris@1")
    [graph_input] = graph.graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    _assert_same_as_native(graph, model, x, {"input": x.to_numpy(np.float32)})
    props = {p.key: p.value for p in graph.metadata_props}
    assert props["modelcycle.ref"] == "iris@1"
    assert props["modelcycle.source_flavor"] == "sklearn"
    signature = embedded_signature(graph)
    assert signature is not None and [s.name for s in signature.inputs] == list(x.columns)


def test_sklearn_on_an_array_with_a_tensor_signature(tmp_path: Path) -> None:
    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    loaded = _package(tmp_path, model, x[:4])
    assert loaded.signature is not None and loaded.signature.kind == "tensor"
    graph = to_onnx(loaded)
    _assert_same_as_native(graph, model, x, {"input": x.astype(np.float32)})


def test_onnx_flavor_round_trip(tmp_path: Path) -> None:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    graph = to_onnx(_package(tmp_path, model, x.head(2)))
    assert flavor_for(graph).name == "onnx"
    info = save_package(graph, tmp_path / "onnx", signature=embedded_signature(graph))
    assert info.flavor == "onnx" and info.needs_trust == ()
    assert info.flavor_meta["prediction_output"] == "label"
    assert info.flavor_meta["probability_output"] == "probabilities"
    assert any(r.startswith("onnxruntime==") for r in info.requirements)
    loaded = load_package(tmp_path / "onnx")
    assert loaded.has_predict_proba
    # columns are picked by name: a frame in another column order predicts the same
    shuffled = x[list(reversed(x.columns))]
    np.testing.assert_array_equal(loaded.predict(shuffled), model.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-5)
    records = x.head(3).to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(records), model.predict(x.head(3)))
    with pytest.raises(InputDataError, match="mean radius"):
        loaded.predict(x.drop(columns=["mean radius"]))
    # an onnx package exports as the graph it holds
    assert to_onnx(loaded).SerializeToString() == graph.SerializeToString()


def test_regressor_predictions_are_one_dimensional(tmp_path: Path) -> None:
    x, _ = _iris()
    features, target = x.iloc[:, :3], x.iloc[:, 3]
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(features, target)
    graph = to_onnx(_package(tmp_path, model, features.head(3)))
    save_package(graph, tmp_path / "onnx")
    loaded = load_package(tmp_path / "onnx")
    predicted = loaded.predict(features)
    assert predicted.shape == (len(features),)
    np.testing.assert_allclose(predicted, model.predict(features), rtol=1e-5, atol=1e-5)
    assert not loaded.has_predict_proba
    with pytest.raises(UsageError, match="no predict_proba"):
        loaded.predict_proba(features)


def test_string_columns_become_one_input_each(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 300),
            "city": rng.choice(["berlin", "lyon", "oslo"], 300),
            "visits": rng.integers(0, 5, 300),
        }
    )
    y = ((frame["age"] > 40) ^ (frame["city"] == "oslo")).astype(int)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "visits"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    model = make_pipeline(columns, LogisticRegression()).fit(frame, y)
    graph = to_onnx(_package(tmp_path, model, frame.head(5)))
    assert [i.name for i in graph.graph.input] == ["age", "city", "visits"]
    save_package(graph, tmp_path / "onnx")
    loaded = load_package(tmp_path / "onnx")
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), atol=1e-5)


@pytest.mark.slow  # torch.onnx's exporter takes a few seconds
def test_torch_mlp_with_a_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = MLP(4, 16, 3).eval()
    x = np.random.default_rng(0).normal(size=(25, 4))
    loaded = _package(
        tmp_path, net, x[:1], init_kwargs={"in_features": 4, "hidden": 16, "classes": 3}
    )
    graph = to_onnx(loaded, ref="mlp@1")
    session = _session(graph)
    with torch.no_grad():
        want = net(torch.as_tensor(x, dtype=torch.float32)).numpy()
    for rows in (1, 7, 25):  # the example had one row; the batch stays free
        [got] = session.run(None, {"input": x[:rows].astype(np.float32)})
        np.testing.assert_allclose(got, want[:rows], rtol=1e-5, atol=1e-5)
    save_package(graph, tmp_path / "onnx")
    np.testing.assert_allclose(load_package(tmp_path / "onnx").predict(x), want, atol=1e-5)


def test_torchscript_is_refused(tmp_path: Path) -> None:
    net = MLP(4, 8, 2).eval()
    with pytest.warns(DeprecationWarning, match="deprecated"):
        scripted = torch.jit.trace(net, torch.zeros(2, 4))
    save_package(scripted, tmp_path / "p", input_example=np.zeros((2, 4), np.float32))
    with pytest.raises(UsageError, match="TorchScript") as error:
        to_onnx(load_package(tmp_path / "p"))
    assert "torch.nn.Module" in (error.value.hint or "")


def test_unsupported_models_name_what_is_supported(tmp_path: Path) -> None:
    x, y = _iris()
    custom = make_pipeline(Doubler(), LogisticRegression(max_iter=1000)).fit(x.to_numpy(), y)
    with pytest.raises(UsageError, match="skl2onnx cannot convert this Pipeline") as error:
        to_onnx(_package(tmp_path / "a", custom, x.to_numpy()[:2]))
    assert "Doubler" in error.value.message

    save_package(lambda_free_rule, tmp_path / "b" / "native")
    with pytest.raises(UsageError, match="does not support the python_function flavor") as bad:
        to_onnx(load_package(tmp_path / "b" / "native", trusted=TRUST))
    assert "sklearn, pytorch" in (bad.value.hint or "")


def lambda_free_rule(data: Any) -> Any:
    """A python_function model: ONNX export cannot convert Python code."""
    return np.zeros(len(data))
