"""Keras 3 packages (``.keras`` format) on the torch backend.

Keras picks its backend from KERAS_BACKEND once, on first import: the variable is set here
before keras is imported, and the test fails if keras was already imported with another
backend. keras is a dev dependency: a missing install fails here, it is never skipped.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from modelcycle.core.errors import UsageError
from modelcycle.flavors import flavor_for, load_package, save_package

# keras' torch backend converts tensors with np.array(tensor), which numpy 2.4 deprecates for
# torch 2.13 tensors; the conversion itself is right. Remove when keras stops doing it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture(scope="module")
def model() -> Any:
    assert keras.backend.backend() == "torch", "keras was imported before KERAS_BACKEND was set"
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.BatchNormalization()(hidden))
    return keras.Model(inputs, outputs)


def test_keras_round_trip(tmp_path: Path, model: Any) -> None:
    x = np.random.default_rng(0).normal(size=(10, 4))
    assert flavor_for(model).name == "keras"  # not pytorch, though it is a torch Module too
    info = save_package(model, tmp_path / "k", input_example=x[:2])
    assert info.flavor_meta["backend"] == "torch"
    assert any(r.startswith("keras==") for r in info.requirements)
    assert any(r.startswith("torch==") for r in info.requirements)
    assert info.signature is not None and info.signature.outputs[0].shape == (-1, 3)
    loaded = load_package(info.path)
    assert isinstance(loaded.native, keras.Model)
    want = model(x.astype("float32"), training=False).detach().numpy()
    np.testing.assert_array_equal(loaded.predict(x), want)
    np.testing.assert_array_equal(loaded.predict(x.tolist()), want)


def test_lambda_layers_are_refused_on_load(tmp_path: Path) -> None:
    """Safe mode: a Lambda layer's Python code is not loaded from a package."""
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    info = save_package(model, tmp_path / "l")
    with pytest.raises(UsageError, match="safe mode"):
        load_package(info.path)
