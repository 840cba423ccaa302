"""Flavors: save, load and run models of each framework in its own safe format.

Built-in flavors: sklearn (skops), xgboost (UBJSON), lightgbm (text model), pytorch
(safetensors or TorchScript), keras (``.keras``), python_function (import path + JSON
parameters), onnx (``.onnx``, run by onnxruntime). Importing this package imports none of those frameworks.

    info = save_package(model, "out/iris", input_example=X[:5], metrics={"f1": 0.93})
    loaded = load_package("out/iris")
    loaded.predict(X)
"""

from __future__ import annotations

from modelcycle.flavors.base import Flavor
from modelcycle.flavors.package import (
    LoadedModel,
    PackageInfo,
    load_package,
    read_package,
    save_package,
    verify_files,
)
from modelcycle.flavors.registry import available_flavors, flavor_for, get_flavor
from modelcycle.flavors.signature import Signature, Spec

__all__ = [
    "Flavor",
    "LoadedModel",
    "PackageInfo",
    "Signature",
    "Spec",
    "available_flavors",
    "flavor_for",
    "get_flavor",
    "load_package",
    "read_package",
    "save_package",
    "verify_files",
]
