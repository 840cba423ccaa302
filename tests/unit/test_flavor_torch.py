"""PyTorch packages: safetensors weights + class, and TorchScript.

torch is a dev dependency: a missing install fails here, it is never skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.flavors import flavor_for, get_flavor, load_package, save_package


class TinyNet(torch.nn.Module):
    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(in_features, hidden),
            torch.nn.BatchNorm1d(hidden),  # has buffers, not only parameters
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


class TiedNet(torch.nn.Module):
    """Two attributes share one weight tensor, which safetensors cannot store twice."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = torch.nn.Linear(4, 4, bias=False)
        self.decode = torch.nn.Linear(4, 4, bias=False)
        self.decode.weight = self.encode.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(torch.tanh(self.encode(x)))  # type: ignore[no-any-return]


KWARGS = {"in_features": 4, "hidden": 8, "out_features": 3}
TRUST = [f"{__name__}.*"]


@pytest.fixture(scope="module")
def net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet(**KWARGS)
    with torch.no_grad():  # give BatchNorm non-default running statistics
        model.train()
        model(torch.randn(64, 4))
    return model.eval()


@pytest.fixture(scope="module")
def x() -> np.ndarray[Any, Any]:
    return np.random.default_rng(0).normal(size=(16, 4))


def expected(model: torch.nn.Module, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).numpy()  # type: ignore[no-any-return]


def test_state_dict_round_trip(tmp_path: Path, net: TinyNet, x: Any) -> None:
    assert flavor_for(net).name == "pytorch"
    info = save_package(net, tmp_path / "n", init_kwargs=KWARGS, input_example=x[:2])
    assert info.flavor_meta["format"] == "safetensors"
    assert info.needs_trust == (f"{__name__}:TinyNet",)
    assert any(r.startswith("torch==2.13.0") for r in info.requirements)
    assert any(r.startswith("safetensors==") for r in info.requirements)
    assert "download.pytorch.org/whl/cpu" in (info.path / "Dockerfile").read_text()
    assert info.signature is not None
    assert info.signature.inputs[0].shape == (-1, 4)
    assert info.signature.outputs[0].shape == (-1, 3)

    with pytest.raises(UsageError, match="not trusted"):
        load_package(info.path)
    loaded = load_package(info.path, trusted=TRUST)
    assert isinstance(loaded.native, TinyNet) and not loaded.native.training
    want = expected(net, x)
    np.testing.assert_array_equal(loaded.predict(x), want)  # float64 is cast to float32
    np.testing.assert_array_equal(loaded.predict(x.tolist()), want)
    np.testing.assert_array_equal(loaded.predict(pd.DataFrame(x)), want)
    np.testing.assert_array_equal(loaded.predict(pl.DataFrame(x)), want)
    np.testing.assert_array_equal(loaded.predict(torch.as_tensor(x)), want)
    assert not loaded.has_predict_proba


def test_torch_nn_classes_are_trusted_by_default(tmp_path: Path, x: Any) -> None:
    layer = torch.nn.Linear(4, 2)
    info = save_package(layer, tmp_path / "l", init_kwargs={"in_features": 4, "out_features": 2})
    assert info.needs_trust == ()
    np.testing.assert_array_equal(load_package(info.path).predict(x), expected(layer, x))


def test_shared_weights(tmp_path: Path, x: Any) -> None:
    model = TiedNet().eval()
    loaded = load_package(save_package(model, tmp_path / "t").path, trusted=TRUST)
    np.testing.assert_array_equal(loaded.predict(x), expected(model, x))
    assert loaded.native.decode.weight is loaded.native.encode.weight


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_round_trip(tmp_path: Path, net: TinyNet, x: Any, how: str) -> None:
    example = torch.as_tensor(x, dtype=torch.float32)
    with pytest.warns(DeprecationWarning, match="deprecated"):  # torch 2.13 deprecates torch.jit
        scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, example)
    info = save_package(scripted, tmp_path / how)
    assert info.flavor_meta["format"] == "torchscript" and info.needs_trust == ()
    loaded = load_package(info.path)
    np.testing.assert_array_equal(loaded.predict(x), expected(net, x))


def test_unsaveable_and_mismatched_modules(tmp_path: Path, net: TinyNet) -> None:
    class Local(torch.nn.Module):
        pass

    with pytest.raises(UsageError, match=r"torch\.jit\.script"):
        save_package(Local(), tmp_path / "a")
    with pytest.raises(UsageError, match="missing a required argument"):
        save_package(net, tmp_path / "b")
    with pytest.warns(DeprecationWarning, match="deprecated"):
        scripted = torch.jit.script(net)
    with pytest.raises(UsageError, match="init_kwargs"):
        save_package(scripted, tmp_path / "c", init_kwargs=KWARGS)
    assert not any(tmp_path.iterdir())

    # weights saved for one shape, rebuilt with another
    info = save_package(net, tmp_path / "d", init_kwargs=KWARGS)
    kwargs_file = info.path / "model" / "init_kwargs.json"
    kwargs_file.write_text(kwargs_file.read_text().replace('"hidden": 8', '"hidden": 9'))
    with pytest.raises(InputDataError, match="does not match its hash"):
        load_package(info.path, trusted=TRUST)
    # the flavor itself, past the hash check: the weights do not fit the rebuilt module
    with pytest.raises(InputDataError, match="do not fit"):
        get_flavor("pytorch").load(info.path / "model", info.flavor_meta, trusted=TRUST)
