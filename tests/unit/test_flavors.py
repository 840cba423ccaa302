"""Model packages: the folder, trust, the flavor registry, scikit-learn and python_function."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelcycle.core.errors import (
    ConflictError,
    InputDataError,
    NotFoundError,
    UsageError,
)
from modelcycle.flavors import (
    Flavor,
    available_flavors,
    flavor_for,
    get_flavor,
    load_package,
    read_package,
    registry,
    save_package,
    trust,
)
from modelcycle.flavors.sklearn import SklearnFlavor

# ---- models the tests save (top level, so their import paths resolve) ----


class AddOne(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A custom transformer: skops must refuse it until it is trusted."""

    def fit(self, X: Any, y: Any = None) -> AddOne:
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X) + 1.0


class Threshold:
    """A rule-based python_function model."""

    def __init__(self, column: str, cutoff: float) -> None:
        self.column = column
        self.cutoff = cutoff

    def predict(self, data: Any) -> Any:
        frame = pd.DataFrame(data)
        return (frame[self.column] > self.cutoff).astype("int64").to_numpy()

    def predict_proba(self, data: Any) -> Any:
        p = self.predict(data).astype(float)
        return np.column_stack([1 - p, p])


class Scaled:
    """A python_function model that reports its parameters like scikit-learn does."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def get_params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def predict(self, data: Any) -> Any:
        return np.asarray(data, dtype=float) * self.factor


def double(data: Any) -> Any:
    return np.asarray(data) * 2


class EchoFlavor(Flavor):
    """A plugin flavor (registered through a fake entry point)."""

    name = "echo"

    def handles(self, model: Any) -> bool:
        return False

    def save(self, model: Any, folder: Path, *, init_kwargs: Any = None) -> dict[str, Any]:
        return {}

    def load(self, folder: Path, meta: Any, *, trusted: Any = ()) -> Any:
        return None

    def predict(self, model: Any, data: Any) -> Any:
        return data


# ---- fixtures ----


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def pipeline(iris: tuple[pd.DataFrame, pd.Series]) -> Any:
    X, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)


@pytest.fixture(scope="module")
def custom_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(AddOne(), LogisticRegression(max_iter=500)).fit(X, y)
    folder = tmp_path_factory.mktemp("custom") / "pkg"
    save_package(model, folder)
    return folder


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


def edit_manifest(folder: Path, old: str, new: str) -> None:
    manifest = folder / "model.toml"
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new))


# ---- scikit-learn ----


def test_sklearn_pipeline_round_trip(tmp_path: Path, iris: Any, pipeline: Any) -> None:
    X, _ = iris
    info = save_package(
        pipeline,
        tmp_path / "iris",
        input_example=X.head(5),
        metrics={"accuracy": np.float64(0.97), "n": np.int64(150)},
        lineage={"run": "run-1", "inputs": {"train": "iris@3"}},
        extra_requirements=["pyarrow>=15"],
    )
    assert info.flavor == "sklearn"
    assert info.needs_trust == ()
    loaded = load_package(tmp_path / "iris")
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), pipeline.predict_proba(X))
    assert loaded.has_predict_proba
    assert type(loaded.native) is type(pipeline)
    assert loaded.flavor.name == "sklearn"
    pd.testing.assert_frame_equal(loaded.input_example(), X.head(5))

    meta = tomllib.loads((tmp_path / "iris" / "model.toml").read_text())
    sklearn_pin = f"scikit-learn=={importlib.metadata.version('scikit-learn')}"
    assert sklearn_pin in meta["requirements"]
    assert f"skops=={importlib.metadata.version('skops')}" in meta["requirements"]
    assert "pyarrow>=15" in meta["requirements"]
    assert meta["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert meta["metrics"] == {"accuracy": 0.97, "n": 150}
    assert meta["lineage"] == {"run": "run-1", "inputs": {"train": "iris@3"}}
    assert meta["created"].endswith("+00:00")
    assert set(meta["files"]) == {
        "model/model.skops",
        "input_example.parquet",
        "requirements.txt",
        "Dockerfile",
    }
    assert sklearn_pin in (tmp_path / "iris" / "requirements.txt").read_text().splitlines()
    docker = (tmp_path / "iris" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in docker or f"FROM python:{sys.version_info[0]}." in docker
    assert '"modelcycle", "serve", "/srv/model"' in docker
    assert "-r /srv/requirements.txt" in docker

    sig = loaded.signature
    assert sig is not None and sig.kind == "columns"
    assert [s.name for s in sig.inputs] == list(X.columns)
    assert {s.dtype for s in sig.inputs} == {"float64"}
    assert sig.outputs[0].dtype == "int64"


def test_sklearn_model_fitted_on_frame_takes_arrays_polars_dicts_records(
    tmp_path: Path, iris: Any, pipeline: Any
) -> None:
    X, _ = iris
    loaded = load_package(save_package(pipeline, tmp_path / "p").path)
    expected = pipeline.predict(X)
    for data in (
        X.to_numpy(),
        X.to_numpy().tolist(),
        pl.from_pandas(X),
        {c: X[c].tolist() for c in X.columns},
        X.to_dict(orient="records"),
    ):
        np.testing.assert_array_equal(loaded.predict(data), expected)
    with pytest.raises(InputDataError, match="missing column"):
        loaded.predict({"sepal length (cm)": [1.0]})


def test_sklearn_array_model_with_tree_internals(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    info = save_package(model, tmp_path / "h", input_example=X[:3])
    # skops lists sklearn's TreePredictor as not trusted by default; it is a library class
    assert info.flavor_meta["types"] != []
    assert info.needs_trust == ()
    loaded = load_package(info.path)
    np.testing.assert_array_equal(loaded.predict(X.tolist()), model.predict(X))
    assert info.signature is not None and info.signature.inputs[0].shape == (-1, 4)
    np.testing.assert_array_equal(loaded.input_example(), X[:3])


def test_sklearn_regressor_round_trip(tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)
    loaded = load_package(save_package(model, tmp_path / "r").path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert not loaded.has_predict_proba
    with pytest.raises(UsageError, match="no predict_proba"):
        loaded.predict_proba(X)


def test_custom_type_is_refused_until_trusted(custom_package: Path) -> None:
    name = f"{__name__}.AddOne"
    assert read_package(custom_package).needs_trust == (name,)
    with pytest.raises(UsageError, match="not trusted") as caught:
        load_package(custom_package)
    assert name in str(caught.value)
    assert f"trusted=['{name}']" in (caught.value.hint or "")
    X, _ = load_iris(return_X_y=True)
    for trusted in ([name], [f"{__name__}.*"]):
        loaded = load_package(custom_package, trusted=trusted)
        assert loaded.predict(X[:5]).shape == (5,)
    with pytest.raises(UsageError, match="list of names"):
        load_package(custom_package, trusted=name)


def test_editing_model_toml_does_not_grant_trust(tmp_path: Path, custom_package: Path) -> None:
    """Trust comes from the skops file's own contents, never from what model.toml claims."""
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(custom_package, folder)
    name = f"{__name__}.AddOne"
    edit_manifest(folder, f'needs_trust = ["{name}"]', "needs_trust = []")
    edit_manifest(folder, f'types = ["{name}"]', "types = []")
    assert read_package(folder).needs_trust == ()
    with pytest.raises(UsageError, match="not trusted"):
        load_package(folder)


def test_trust_rules() -> None:
    assert trust.is_trusted("mypkg.nets:Net", ["mypkg.nets.Net"])
    assert trust.is_trusted("mypkg.nets.Net", ["mypkg.*"])
    assert not trust.is_trusted("mypkgx.Net", ["mypkg.*"])
    assert not trust.is_trusted("mypkg.nets.Net", ["mypkg.nets.Ne"])
    assert trust.is_library_class("sklearn.tree._tree.Tree")
    assert trust.is_library_class("numpy.dtype")
    assert not trust.is_library_class("numpy.load")  # a function, not a class
    assert not trust.is_library_class("numpy.lib.npyio.NpzFile")  # reads files
    assert not trust.is_library_class("builtins.eval")
    assert not trust.is_library_class("posix.system")
    assert not trust.is_library_class("sklearn.no_such_module.Thing")


# ---- the package folder ----


def test_damaged_files_are_refused(tmp_path: Path, pipeline: Any) -> None:
    folder = save_package(pipeline, tmp_path / "p").path
    model_file = folder / "model" / "model.skops"
    model_file.write_bytes(model_file.read_bytes()[:-10])
    with pytest.raises(InputDataError, match="does not match its hash"):
        load_package(folder)
    model_file.unlink()
    with pytest.raises(InputDataError, match="missing"):
        load_package(folder)


def test_missing_or_corrupt_manifest(tmp_path: Path, pipeline: Any) -> None:
    with pytest.raises(NotFoundError):
        load_package(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match=r"no model\.toml"):
        load_package(tmp_path / "empty")
    folder = save_package(pipeline, tmp_path / "p").path
    manifest = folder / "model.toml"
    text = manifest.read_text()
    manifest.write_text("format = 1\nflavor = [unclosed\n")
    with pytest.raises(InputDataError, match="not valid TOML"):
        load_package(folder)
    manifest.write_text("format = 1\n")
    with pytest.raises(InputDataError, match="lacks"):
        load_package(folder)
    manifest.write_text(text.replace("format = 1", "format = 99"))
    with pytest.raises(UsageError, match="upgrade modelcycle"):
        load_package(folder)
    manifest.write_text(text.replace('"model/model.skops"', '"../../etc/passwd"'))
    with pytest.raises(InputDataError, match="outside the package"):
        load_package(folder)
    manifest.write_text(text.replace('flavor = "sklearn"', 'flavor = "sklern"'))
    with pytest.raises(UsageError, match="did you mean 'sklearn'"):
        load_package(folder)


def test_missing_framework_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xgboost", None)  # what an uninstalled module looks like
    with pytest.raises(UsageError, match="'xgboost', which is not installed") as caught:
        get_flavor("xgboost").load(tmp_path, {"file": "model.ubj", "class": "XGBClassifier"})
    assert caught.value.hint == "pip install 'modelcycle[xgboost]'"


def test_missing_user_code_is_named(tmp_path: Path) -> None:
    model = Threshold("a", 1.0)
    folder = save_package(model, tmp_path / "t", init_kwargs=vars(model)).path
    edit_manifest(
        folder, f'class = "{__name__}:Threshold"', 'class = "not_installed_pkg.rules:Rule"'
    )
    with pytest.raises(UsageError, match=r"cannot import 'not_installed_pkg\.rules'") as caught:
        load_package(folder, trusted=["not_installed_pkg.*"])
    assert "not_installed_pkg" in (caught.value.hint or "")


@pytest.mark.parametrize("where", ["flavor", "manifest"])
def test_failed_save_leaves_nothing(
    tmp_path: Path, pipeline: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    def half_written_flavor(self: Any, model: Any, folder: Path, **kw: Any) -> dict[str, Any]:
        (folder / "model.skops").write_bytes(b"half")
        raise RuntimeError("disk full")

    def failing_dumps(data: Any) -> str:
        raise RuntimeError("disk full")

    if where == "flavor":
        monkeypatch.setattr(SklearnFlavor, "save", half_written_flavor)
    else:
        monkeypatch.setattr("modelcycle.flavors.toml_writer.dumps", failing_dumps)
    parent = tmp_path / "models"
    parent.mkdir()
    with pytest.raises(RuntimeError, match="disk full"):
        save_package(pipeline, parent / "p", input_example=np.zeros((2, 4)))
    assert list(parent.iterdir()) == []


def test_target_must_be_new_or_empty(tmp_path: Path, pipeline: Any) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConflictError):
        save_package(pipeline, tmp_path / "full")
    (tmp_path / "empty").mkdir()
    assert save_package(pipeline, tmp_path / "empty").path == tmp_path / "empty"
    with pytest.raises(ConflictError):
        save_package(pipeline, tmp_path / "empty")


def test_bad_arguments(tmp_path: Path, pipeline: Any) -> None:
    with pytest.raises(UsageError, match="takes no init_kwargs"):
        save_package(pipeline, tmp_path / "a", init_kwargs={"x": 1})
    with pytest.raises(UsageError, match=r"model\.toml cannot store"):
        save_package(pipeline, tmp_path / "b", metrics={"curve": object()})
    with pytest.raises(UsageError, match="cannot save"):
        save_package(pipeline, tmp_path / "c", flavor="xgboost")
    with pytest.raises(InputDataError, match="cannot predict on the input example"):
        save_package(pipeline, tmp_path / "d", input_example=np.zeros((2, 7)))
    assert not any(tmp_path.iterdir())


# ---- registry ----


def test_registry_lookup_and_detection(pipeline: Any) -> None:
    assert available_flavors()[:6] == [
        "keras",
        "pytorch",
        "xgboost",
        "lightgbm",
        "sklearn",
        "python_function",
    ]
    assert flavor_for(pipeline).name == "sklearn"
    assert flavor_for(double).name == "python_function"
    assert flavor_for(Threshold("a", 1)).name == "python_function"
    with pytest.raises(UsageError, match="did you mean 'lightgbm'"):
        get_flavor("lightgmb")
    with pytest.raises(UsageError, match="no flavor can save"):
        flavor_for(object())


def test_entry_point_plugins(monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> None:
    def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        return [importlib.metadata.EntryPoint("echo", f"{__name__}:EchoFlavor", group)]

    monkeypatch.setattr(registry.importlib.metadata, "entry_points", entry_points)
    assert "echo" in available_flavors()
    assert isinstance(get_flavor("echo"), EchoFlavor)


def test_plugin_may_not_take_a_builtin_name(
    monkeypatch: pytest.MonkeyPatch, fresh_plugins: None
) -> None:
    def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
        return [importlib.metadata.EntryPoint("sklearn", f"{__name__}:EchoFlavor", group)]

    monkeypatch.setattr(registry.importlib.metadata, "entry_points", entry_points)
    with pytest.raises(UsageError, match="built-in flavor"):
        get_flavor("nope")


def test_importing_flavors_imports_no_framework() -> None:
    code = (
        "import sys, modelcycle.flavors as f\n"
        "[f.get_flavor(n) for n in f.available_flavors()]\n"
        "heavy = {'torch', 'xgboost', 'lightgbm', 'keras', 'skops', 'safetensors', 'sklearn'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"


# ---- python_function ----


def test_python_function_class_round_trip(tmp_path: Path) -> None:
    model = Threshold("a", 1.5)
    data = {"a": [1.0, 2.0, 3.0]}
    info = save_package(model, tmp_path / "t", init_kwargs={"column": "a", "cutoff": 1.5})
    assert info.needs_trust == (f"{__name__}:Threshold",)
    assert "--trust" in (tmp_path / "t" / "Dockerfile").read_text()
    with pytest.raises(UsageError, match="not trusted"):
        load_package(info.path)
    loaded = load_package(info.path, trusted=[f"{__name__}.Threshold"])
    np.testing.assert_array_equal(loaded.predict(data), [0, 1, 1])
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
    assert isinstance(loaded.native, Threshold) and loaded.native.cutoff == 1.5


def test_python_function_params_from_get_params_and_functions(tmp_path: Path) -> None:
    loaded = load_package(save_package(Scaled(3.0), tmp_path / "s").path, trusted=[f"{__name__}.*"])
    np.testing.assert_array_equal(loaded.predict([1, 2]), [3.0, 6.0])
    info = save_package(double, tmp_path / "f", input_example=np.array([[1, 2]]))
    assert info.needs_trust == (f"{__name__}:double",)
    loaded = load_package(info.path, trusted=[f"{__name__}.double"])
    np.testing.assert_array_equal(loaded.predict(np.array([[1, 2]])), [[2, 4]])
    assert not loaded.has_predict_proba


def test_python_function_refuses_what_cannot_be_rebuilt(tmp_path: Path) -> None:
    class Local:
        def predict(self, data: Any) -> Any:
            return data

    with pytest.raises(UsageError, match="cannot be imported"):
        save_package(Local(), tmp_path / "a")
    with pytest.raises(UsageError, match="cannot be imported"):
        save_package(lambda data: data, tmp_path / "b", flavor="python_function")
    with pytest.raises(UsageError, match="missing a required argument"):
        save_package(Threshold("a", 1.0), tmp_path / "c", init_kwargs={"column": "a"})
    with pytest.raises(UsageError, match="JSON"):
        save_package(
            Threshold("a", 1.0), tmp_path / "d", init_kwargs={"column": "a", "cutoff": object()}
        )
    assert not any(tmp_path.iterdir())
