"""scikit-learn estimators and pipelines, stored with skops (never pickle).

skops records every type and function a model is made of. Loading refuses a file that
names anything outside what skops trusts by default, classes of scikit-learn, NumPy and
SciPy, and what the caller passes as ``trusted`` — see `modelcycle.flavors.trust`. A
pipeline with a custom transformer (``mypkg.features.Scaler``) therefore loads only with
``trusted=["mypkg.features.Scaler"]`` or ``trusted=["mypkg.*"]``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelcycle.core.errors import InputDataError
from modelcycle.flavors import trust
from modelcycle.flavors.base import (
    Flavor,
    framework_version,
    import_framework,
    loaded_module,
    pinned,
)
from modelcycle.flavors.inputs import tabular

FILE = "model.skops"


class SklearnFlavor(Flavor):
    name = "sklearn"
    extra = None  # scikit-learn and skops are core dependencies
    modules = ("sklearn", "skops", "numpy", "scipy")

    def handles(self, model: Any) -> bool:
        base = loaded_module("sklearn.base")
        return base is not None and isinstance(model, base.BaseEstimator)

    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        sio = import_framework("skops.io", self.extra)
        path = folder / FILE
        sio.dump(model, path)
        return {
            "file": FILE,
            "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
            "sklearn_version": framework_version("sklearn"),
            "skops_version": framework_version("skops"),
            # types outside skops' defaults, so callers can show what loading will need
            "types": sorted(sio.get_untrusted_types(file=path)),
        }

    def needs_trust(self, meta: Mapping[str, Any]) -> list[str]:
        return [t for t in meta.get("types", []) if not trust.is_library_class(t)]

    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        sio = import_framework("skops.io", self.extra)
        path = folder / str(meta.get("file", FILE))
        try:
            # what the file itself contains, not what model.toml claims it contains
            names = sio.get_untrusted_types(file=path)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
            raise InputDataError(
                f"{path} is not a readable skops file: {e}",
                hint="the package is damaged; save the model again",
            ) from e
        refused = trust.untrusted((n for n in names if not trust.is_library_class(n)), trusted)
        if refused:
            raise trust.refuse(refused, f"skops file {path}")
        return sio.load(path, trusted=list(names))

    def predict(self, model: Any, data: Any) -> Any:
        return model.predict(tabular(data, _feature_names(model)))

    def has_predict_proba(self, model: Any) -> bool:
        return hasattr(model, "predict_proba")

    def predict_proba(self, model: Any, data: Any) -> Any:
        if not self.has_predict_proba(model):
            return super().predict_proba(model, data)
        return model.predict_proba(tabular(data, _feature_names(model)))

    def requirements(self, model: Any) -> list[str]:
        return pinned(*self.modules, *_other_libraries(model))


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _other_libraries(model: Any) -> list[str]:
    """Top-level packages of the steps of a pipeline that are not scikit-learn's."""
    found: list[str] = []
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return found
    for value in get_params(deep=True).values():
        top = type(value).__module__.partition(".")[0]
        if hasattr(value, "fit") and top not in ("sklearn", "builtins") and top not in found:
            found.append(top)
    return found
