"""LightGBM boosters and scikit-learn-API models, in LightGBM's own text format.

LightGBM can rebuild a `lightgbm.Booster` from its text model but not a scikit-learn
wrapper: what a classifier adds (the class labels, probabilities for two classes) is kept
in the flavor metadata and reapplied by `ClassifierBooster`. The native model of a loaded
package is always the `lightgbm.Booster`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelcycle.core.errors import UsageError
from modelcycle.flavors.base import (
    Flavor,
    framework_version,
    import_framework,
    loaded_module,
    pinned,
)
from modelcycle.flavors.inputs import is_columns, is_frame, is_records, tabular, to_pandas

FILE = "model.txt"


@dataclass(frozen=True)
class ClassifierBooster:
    """A LightGBM booster trained by ``LGBMClassifier``, with its class labels."""

    booster: Any
    classes: np.ndarray[Any, Any]

    def predict_proba(self, data: Any) -> np.ndarray[Any, Any]:
        scores = np.asarray(self.booster.predict(data))
        if scores.ndim == 1:  # binary: the booster gives P(second class)
            return np.column_stack([1.0 - scores, scores])
        return scores

    def predict(self, data: Any) -> np.ndarray[Any, Any]:
        labels: np.ndarray[Any, Any] = self.classes[np.argmax(self.predict_proba(data), axis=1)]
        return labels


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    extra = "lightgbm"
    modules = ("lightgbm", "numpy", "scipy")

    def handles(self, model: Any) -> bool:
        lgb = loaded_module("lightgbm")
        return lgb is not None and isinstance(model, lgb.LGBMModel | lgb.Booster)

    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        lgb = import_framework("lightgbm", self.extra)
        meta: dict[str, Any] = {
            "file": FILE,
            "estimator": type(model).__name__,
            "lightgbm_version": framework_version("lightgbm"),
        }
        booster = model
        if isinstance(model, lgb.LGBMModel):
            if callable(model.objective):
                raise UsageError(
                    "a LightGBM model trained with a custom objective function cannot be saved "
                    "as a text model (the function is not part of it)",
                    hint="save model.booster_ instead; its predictions are raw scores",
                )
            booster = model.booster_
            if isinstance(model, lgb.LGBMClassifier):
                classes = model.classes_.tolist()
                if not all(isinstance(c, str | int | float) for c in classes):
                    raise UsageError(
                        "LightGBM classifier labels must be numbers or strings to be saved",
                        hint="encode the target labels before fitting",
                    )
                meta["classes"] = classes
        booster.save_model(str(folder / FILE))
        return meta

    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        lgb = import_framework("lightgbm", self.extra)
        booster = lgb.Booster(model_file=str(folder / str(meta.get("file", FILE))))
        if "classes" in meta:
            return ClassifierBooster(booster, np.asarray(meta["classes"]))
        return booster

    def native(self, model: Any) -> Any:
        return model.booster if isinstance(model, ClassifierBooster) else model

    def predict(self, model: Any, data: Any) -> Any:
        if isinstance(model, ClassifierBooster):
            return model.predict(_prepare(model.booster, data))
        lgb = import_framework("lightgbm", self.extra)
        if isinstance(model, lgb.Booster):
            return model.predict(_prepare(model, data))
        return model.predict(_prepare(model.booster_, data))

    def has_predict_proba(self, model: Any) -> bool:
        return isinstance(model, ClassifierBooster) or hasattr(model, "predict_proba")

    def predict_proba(self, model: Any, data: Any) -> Any:
        if isinstance(model, ClassifierBooster):
            return model.predict_proba(_prepare(model.booster, data))
        if not self.has_predict_proba(model):
            return super().predict_proba(model, data)
        return model.predict_proba(_prepare(model.booster_, data))

    def requirements(self, model: Any) -> list[str]:
        lgb = loaded_module("lightgbm")
        sklearn_api = lgb is not None and isinstance(model, lgb.LGBMModel)
        return pinned(*self.modules, *(("sklearn",) if sklearn_api else ()))


def _prepare(booster: Any, data: Any) -> Any:
    names = _feature_names(booster)
    if names is not None and (is_frame(data) or is_columns(data) or is_records(data)):
        # LightGBM stores column names with spaces replaced by underscores
        data = to_pandas(data).rename(columns=lambda c: str(c).replace(" ", "_"))
    return tabular(data, names)


def _feature_names(booster: Any) -> list[str] | None:
    names = [str(n) for n in booster.feature_name()]
    # LightGBM names the columns of arrays Column_0, Column_1, ...
    if names == [f"Column_{i}" for i in range(len(names))]:
        return None
    return names
