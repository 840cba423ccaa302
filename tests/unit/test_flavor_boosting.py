"""XGBoost and LightGBM packages round-trip to identical predictions.

The frameworks are dev dependencies: a missing install fails here, it is never skipped.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from modelcycle.core.errors import UsageError
from modelcycle.flavors import flavor_for, load_package, save_package


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, Any]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y.to_numpy()


@pytest.fixture(scope="module")
def diabetes() -> tuple[Any, Any]:
    return load_diabetes(return_X_y=True)


def pin(module_dist: str) -> str:
    return f"{module_dist}=={importlib.metadata.version(module_dist)}"


# ---- XGBoost ----


def test_xgb_classifier_on_frame(tmp_path: Path, iris: Any) -> None:
    X, y = iris
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, y)
    assert flavor_for(model).name == "xgboost"
    info = save_package(model, tmp_path / "x", input_example=X.head(3))
    assert info.flavor_meta["file"] == "model.ubj"
    assert any(r.startswith(("xgboost==", "xgboost-cpu==")) for r in info.requirements)
    loaded = load_package(info.path)
    assert isinstance(loaded.native, xgb.XGBClassifier)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X.to_numpy().tolist()), model.predict(X))
    assert info.signature is not None and info.signature.kind == "columns"


def test_xgb_regressor_and_booster(tmp_path: Path, diabetes: Any) -> None:
    X, y = diabetes
    model = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, y)
    loaded = load_package(save_package(model, tmp_path / "r").path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert not loaded.has_predict_proba

    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, label=y), num_boost_round=10)
    info = save_package(booster, tmp_path / "b", input_example=X[:2])
    assert not any(r.startswith("scikit-learn") for r in info.requirements)
    loaded = load_package(info.path)
    assert isinstance(loaded.native, xgb.Booster)
    np.testing.assert_array_equal(loaded.predict(X), booster.predict(xgb.DMatrix(X)))


# ---- LightGBM ----


def test_lgbm_multiclass_on_frame(tmp_path: Path, iris: Any) -> None:
    X, y = iris
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(X, y)
    assert flavor_for(model).name == "lightgbm"
    info = save_package(model, tmp_path / "l", input_example=X.head(3))
    assert pin("lightgbm") in info.requirements
    assert (info.path / "model" / "model.txt").read_text().startswith("tree")
    loaded = load_package(info.path)
    assert isinstance(loaded.native, lgb.Booster)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X.to_numpy()), model.predict(X))


def test_lgbm_binary_with_string_labels(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(X, labels)
    loaded = load_package(save_package(model, tmp_path / "b").path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_lgbm_regressor_and_booster(tmp_path: Path, diabetes: Any) -> None:
    X, y = diabetes
    model = lgb.LGBMRegressor(n_estimators=10, num_leaves=7, verbose=-1).fit(X, y)
    loaded = load_package(save_package(model, tmp_path / "r").path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert not loaded.has_predict_proba

    booster = lgb.train(
        {"num_leaves": 7, "verbose": -1}, lgb.Dataset(X, label=y), num_boost_round=10
    )
    loaded = load_package(save_package(booster, tmp_path / "b").path)
    np.testing.assert_array_equal(loaded.predict(X), booster.predict(X))


def test_lgbm_custom_objective_is_refused(tmp_path: Path, diabetes: Any) -> None:
    X, y = diabetes

    def squared(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        return y_pred - y_true, np.ones_like(y_true)

    model = lgb.LGBMRegressor(n_estimators=2, objective=squared, verbose=-1).fit(X, y)
    with pytest.raises(UsageError, match="custom objective"):
        save_package(model, tmp_path / "c")
    assert not any(tmp_path.iterdir())
