"""Any model written in Python: a class with ``predict``, or a plain function.

Nothing is pickled. A package stores the import path of the class (``mypkg.models:Rules``)
and the JSON keyword arguments that construct it (``init_kwargs``, else the object's
``get_params()``, else none); or the import path of a function called as ``fn(data)``. The
code itself must be installed wherever the package is loaded, and loading imports and runs
it, so the caller must trust the path (``trusted=["mypkg.*"]``; see
`modelcycle.flavors.trust`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.flavors import trust
from modelcycle.flavors.base import Flavor, pinned
from modelcycle.flavors.imports import check_kwargs, import_path_of, resolve_import_path

PARAMS = "params.json"
HINT = "define it at the top level of an importable module (not in __main__ or a function)"


class PythonFunctionFlavor(Flavor):
    name = "python_function"
    modules = ("numpy",)
    takes_init_kwargs = True

    def handles(self, model: Any) -> bool:
        return inspect.isfunction(model) or (
            not isinstance(model, type) and callable(getattr(model, "predict", None))
        )

    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        if inspect.isfunction(model):
            if init_kwargs:
                raise UsageError("a function takes no init_kwargs", hint="drop init_kwargs")
            return {"kind": "function", "function": import_path_of(model, hint=HINT)}
        path = import_path_of(type(model), hint=HINT)
        params = _params(model, init_kwargs)
        check_kwargs(type(model), params, path)
        try:
            text = json.dumps(params, indent=2)
        except TypeError as e:
            raise UsageError(
                f"the parameters of {path} must be JSON values ({e})",
                hint="pass init_kwargs with numbers, strings, lists and dicts that rebuild it",
            ) from e
        (folder / PARAMS).write_text(text, encoding="utf-8")
        return {"kind": "class", "class": path, "params_file": PARAMS}

    def needs_trust(self, meta: Mapping[str, Any]) -> list[str]:
        return [_path(meta)]

    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        path = _path(meta)
        if trust.untrusted([path], trusted):
            raise trust.refuse([path], "python_function package")
        obj = resolve_import_path(path)
        if meta.get("kind") == "function":
            return obj
        params = json.loads((folder / str(meta.get("params_file", PARAMS))).read_text("utf-8"))
        try:
            return obj(**params)
        except TypeError as e:
            raise UsageError(
                f"could not build {path}(**{params!r}): {e}",
                hint="save the package again with the init_kwargs that construct the model",
            ) from e

    def predict(self, model: Any, data: Any) -> Any:
        return model(data) if inspect.isfunction(model) else model.predict(data)

    def has_predict_proba(self, model: Any) -> bool:
        return callable(getattr(model, "predict_proba", None))

    def predict_proba(self, model: Any, data: Any) -> Any:
        if not self.has_predict_proba(model):
            return super().predict_proba(model, data)
        return model.predict_proba(data)

    def requirements(self, model: Any) -> list[str]:
        return pinned(
            *self.modules,
            type(model).__module__ if not inspect.isfunction(model) else model.__module__,
        )


def _params(model: Any, init_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    if init_kwargs is not None:
        return dict(init_kwargs)
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        return dict(get_params())
    return {}


def _path(meta: Mapping[str, Any]) -> str:
    key = "function" if meta.get("kind") == "function" else "class"
    path = meta.get(key)
    if not isinstance(path, str):
        raise InputDataError(
            f"python_function metadata has no {key!r} import path",
            hint="the package is damaged; save the model again",
        )
    return path
