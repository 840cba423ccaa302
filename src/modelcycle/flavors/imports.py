"""Import paths (``package.module:Qualified.name``) of classes and functions, both ways."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from modelcycle.core.errors import UsageError


def import_path_of(obj: Any, *, hint: str) -> str:
    """``module:qualname`` of a class or function that can be imported back as itself."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        raise UsageError(f"{obj!r} has no import path", hint=hint)
    path = f"{module}:{qualname}"
    if module == "__main__" or "<locals>" in qualname or "<lambda>" in qualname:
        raise UsageError(f"{path} cannot be imported from another process", hint=hint)
    try:
        found = resolve_import_path(path)
    except UsageError as e:
        raise UsageError(e.message, hint=hint) from e
    if found is not obj:
        raise UsageError(f"{path} imports a different object than the one given", hint=hint)
    return path


def resolve_import_path(path: str) -> Any:
    """The object ``module:qualname`` names; `UsageError` when it cannot be imported."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise UsageError(
            f"{path!r} is not an import path", hint="write it as 'package.module:Name'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"cannot import {module_name!r} for {path} ({e})",
            hint=f"install the package that provides {module_name.partition('.')[0]!r} "
            "(its pinned version is in the model package's requirements.txt)",
            missing=module_name,
        ) from e
    try:
        for attr in qualname.split("."):
            obj = getattr(obj, attr)
    except AttributeError as e:
        raise UsageError(
            f"{module_name!r} has no {qualname!r} ({e})",
            hint="install the version of the code the package was saved with",
        ) from e
    return obj


def check_kwargs(cls: type, kwargs: Mapping[str, Any], path: str) -> None:
    """`UsageError` now, rather than at load time, if ``cls(**kwargs)`` cannot be called."""
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise UsageError(
            f"{path} cannot be constructed with {dict(kwargs)!r}: {e}",
            hint="pass init_kwargs with the keyword arguments that construct the model",
        ) from e
    except ValueError:  # no signature to inspect (some builtins): find out at load time
        return
