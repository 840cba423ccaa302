"""PyTorch modules: weights in safetensors plus the class to rebuild, or TorchScript.

A plain ``torch.nn.Module`` is stored as its state dict (``model.safetensors``), the import
path of its class (``mypkg.nets:Net``) and the keyword arguments that construct it
(``init_kwargs``, JSON in ``init_kwargs.json``). Loading imports that class, so it must be
trusted (classes under ``torch.nn`` are; see `modelcycle.flavors.trust`). A
``torch.jit.ScriptModule`` (from ``torch.jit.script`` or ``torch.jit.trace``) carries its own
code and is stored as TorchScript (``model.pt``).

Predictions run on the CPU under ``torch.no_grad()``; floating-point inputs are cast to the
dtype of the model's parameters.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.flavors import trust
from modelcycle.flavors.base import (
    Flavor,
    framework_version,
    import_framework,
    loaded_module,
    pinned,
)
from modelcycle.flavors.imports import check_kwargs, import_path_of, resolve_import_path
from modelcycle.flavors.inputs import is_instance, to_numpy

WEIGHTS = "model.safetensors"
SCRIPT = "model.pt"
INIT_KWARGS = "init_kwargs.json"
#: classes whose import path a package may name without the caller's say-so
TRUSTED = ("torch.nn.*",)
_CHANGED = "the class changed since the package was saved, or init_kwargs differ"


class PyTorchFlavor(Flavor):
    name = "pytorch"
    extra = "torch"
    modules = ("torch", "safetensors", "numpy")
    takes_init_kwargs = True

    def handles(self, model: Any) -> bool:
        torch = loaded_module("torch")
        return torch is not None and isinstance(model, torch.nn.Module)

    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        torch = import_framework("torch", self.extra)
        meta: dict[str, Any] = {"torch_version": framework_version("torch")}
        if isinstance(model, torch.jit.ScriptModule):
            if init_kwargs:
                raise UsageError(
                    "init_kwargs is for modules stored as weights; a TorchScript module "
                    "carries its own code",
                    hint="drop init_kwargs",
                )
            with _torchscript_deprecation_ignored():
                torch.jit.save(model, str(folder / SCRIPT))
            return {**meta, "format": "torchscript", "file": SCRIPT}
        st = import_framework("safetensors.torch", self.extra)
        path = import_path_of(
            type(model),
            hint="define the module class in an importable module, or save "
            "torch.jit.script(model) instead",
        )
        kwargs = dict(init_kwargs or {})
        check_kwargs(type(model), kwargs, path)
        try:
            (folder / INIT_KWARGS).write_text(json.dumps(kwargs, indent=2), encoding="utf-8")
        except TypeError as e:
            raise UsageError(
                f"init_kwargs of {path} must be JSON values ({e})",
                hint="pass numbers, strings, lists and dicts that rebuild the module",
            ) from e
        # save_model (not save_file) drops tied weights that share memory and restores them.
        st.save_model(model, str(folder / WEIGHTS))
        return {
            **meta,
            "format": "safetensors",
            "file": WEIGHTS,
            "class": path,
            "init_kwargs_file": INIT_KWARGS,
        }

    def needs_trust(self, meta: Mapping[str, Any]) -> list[str]:
        if meta.get("format") != "safetensors":
            return []
        return trust.untrusted([str(meta.get("class", ""))], TRUSTED)

    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        torch = import_framework("torch", self.extra)
        fmt = meta.get("format")
        if fmt == "torchscript":
            with _torchscript_deprecation_ignored():
                model = torch.jit.load(
                    str(folder / str(meta.get("file", SCRIPT))), map_location="cpu"
                )
            model.eval()
            return model
        if fmt != "safetensors":
            raise InputDataError(
                f"unknown PyTorch package format {fmt!r}",
                hint="the package is damaged or made by a newer modelcycle",
            )
        st = import_framework("safetensors.torch", self.extra)
        path = str(meta.get("class", ""))
        refused = trust.untrusted([path], [*TRUSTED, *trusted])
        if refused:
            raise trust.refuse(refused, "PyTorch package")
        cls = resolve_import_path(path)
        kwargs = json.loads((folder / str(meta.get("init_kwargs_file", INIT_KWARGS))).read_text())
        try:
            model = cls(**kwargs)
        except TypeError as e:
            raise UsageError(
                f"could not build {path}(**{kwargs!r}): {e}",
                hint="save the package again with the init_kwargs that construct the module",
            ) from e
        try:
            missing, unexpected = st.load_model(
                model, str(folder / str(meta["file"])), strict=False
            )
        except RuntimeError as e:  # a tensor of another shape
            raise InputDataError(f"the weights do not fit {path}: {e}", hint=_CHANGED) from e
        if missing or unexpected:
            raise InputDataError(
                f"the weights do not fit {path}: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}",
                hint=_CHANGED,
            )
        model.eval()
        return model

    def predict(self, model: Any, data: Any) -> Any:
        torch = import_framework("torch", self.extra)
        with torch.no_grad():
            return _to_numpy(torch, model(_to_tensor(torch, model, data)))

    def requirements(self, model: Any) -> list[str]:
        return pinned(*self.modules, *_user_module(model))


@contextlib.contextmanager
def _torchscript_deprecation_ignored() -> Iterator[None]:
    # torch 2.13 deprecates all of torch.jit. Whoever made a ScriptModule was warned by
    # torch.jit.script/trace; repeating it on every save and load of the package helps nobody.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit.* is deprecated", DeprecationWarning)
        yield


def _to_tensor(torch: Any, model: Any, data: Any) -> Any:
    if is_instance(data, "torch", "Tensor"):
        tensor = data
    else:
        # C order: a column-major array (polars' to_numpy) would take another matmul kernel
        # and differ in the last bits. Writable: torch warns about read-only (pandas) arrays.
        array = np.ascontiguousarray(to_numpy(data))
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    if tensor.is_floating_point():
        param = next(iter(model.parameters()), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        tensor = tensor.to(dtype)
    return tensor.cpu()


def _to_numpy(torch: Any, output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.detach().cpu().numpy()
    if isinstance(output, tuple | list):
        return [_to_numpy(torch, o) for o in output]
    if isinstance(output, dict):
        return {k: _to_numpy(torch, v) for k, v in output.items()}
    return output


def _user_module(model: Any) -> list[str]:
    top = type(model).__module__.partition(".")[0]
    return [] if top == "torch" else [top]
