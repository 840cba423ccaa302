"""Find flavors by name or by model, from a table of lazily imported classes and plugins.

Built-in flavors are listed as import paths and imported on first use. Other packages add
flavors through the ``modelcycle.flavors`` entry-point group, each entry naming a `Flavor`
subclass::

    [project.entry-points."modelcycle.flavors"]
    catboost = "modelcycle_catboost:CatBoostFlavor"

Built-in names are reserved. `flavor_for` asks the built-ins first (in the order of
`BUILTINS`, most specific first: a Keras model on the torch backend is also a
``torch.nn.Module``), then plugins, and ``python_function`` last since it takes any
object with a ``predict`` method.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from typing import Any

from modelcycle.core.errors import UsageError
from modelcycle.core.text import suggest
from modelcycle.flavors.base import Flavor

GROUP = "modelcycle.flavors"
FALLBACK = "python_function"

# name -> "module:Class"; the order is the order in which flavor_for asks them
BUILTINS: dict[str, str] = {
    "keras": "modelcycle.flavors.keras:KerasFlavor",
    "pytorch": "modelcycle.flavors.pytorch:PyTorchFlavor",
    "xgboost": "modelcycle.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "modelcycle.flavors.lightgbm:LightGBMFlavor",
    "sklearn": "modelcycle.flavors.sklearn:SklearnFlavor",
    FALLBACK: "modelcycle.flavors.python_function:PythonFunctionFlavor",
    # newer built-ins go last; flavor_for asks FALLBACK after every other flavor anyway
    "onnx": "modelcycle.flavors.onnx:OnnxFlavor",
}


def available_flavors() -> list[str]:
    """Names of every flavor: built-ins, then plugins."""
    return [*BUILTINS, *_plugins()]


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``; `UsageError` listing the valid names if there is none."""
    if name in BUILTINS:
        return _instance(BUILTINS[name])
    plugins = _plugins()
    if name in plugins:
        return _instance(plugins[name])
    names = available_flavors()
    raise UsageError(
        f"unknown flavor {name!r}{suggest(name, names)}",
        hint=f"use one of: {', '.join(names)}; other flavors come from plugins that "
        f"register the {GROUP!r} entry point",
    )


def flavor_for(model: Any) -> Flavor:
    """The flavor that handles ``model``; `UsageError` if none does."""
    order = [n for n in BUILTINS if n != FALLBACK] + list(_plugins()) + [FALLBACK]
    for name in order:
        flavor = get_flavor(name)
        if flavor.handles(model):
            return flavor
    raise UsageError(
        f"no flavor can save a {type(model).__module__}.{type(model).__qualname__}",
        hint=f"flavors: {', '.join(available_flavors())}; a model needs a predict method "
        "at least (python_function), or pass flavor= explicitly",
    )


@functools.cache
def _plugins() -> dict[str, str]:
    """Plugin name -> import path, from installed distributions' entry points."""
    found: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        if ep.name in BUILTINS:
            dist = ep.dist.name if ep.dist is not None else "an installed package"
            raise UsageError(
                f"{dist} registers a flavor named {ep.name!r}, which is a built-in flavor",
                hint=f"rename the entry point in {dist}'s {GROUP!r} group, or uninstall it",
            )
        found[ep.name] = ep.value
    return found


@functools.cache
def _instance(path: str) -> Flavor:
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise UsageError(
            f"cannot load flavor {path} ({e})",
            hint="reinstall the package that provides it",
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, Flavor)):
        raise UsageError(
            f"{path} is not a modelcycle Flavor class",
            hint="an entry point in the 'modelcycle.flavors' group must name a Flavor subclass",
        )
    return cls()
