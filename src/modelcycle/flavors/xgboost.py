"""XGBoost boosters and scikit-learn-API models, in XGBoost's own UBJSON format.

``save_model`` of the scikit-learn wrappers stores the booster and the wrapper's own
attributes (classes, objective) in the same file, so ``load_model`` on a new wrapper of the
same class gives the model back. The class comes from a fixed table, never from the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelcycle.core.errors import InputDataError
from modelcycle.flavors.base import (
    Flavor,
    framework_version,
    import_framework,
    loaded_module,
    pinned,
)
from modelcycle.flavors.inputs import tabular

FILE = "model.ubj"
CLASSES = (
    "Booster",
    "XGBClassifier",
    "XGBRegressor",
    "XGBRanker",
    "XGBRFClassifier",
    "XGBRFRegressor",
)


class XGBoostFlavor(Flavor):
    name = "xgboost"
    extra = "xgboost"
    modules = ("xgboost", "numpy", "scipy")

    def handles(self, model: Any) -> bool:
        xgb = loaded_module("xgboost")
        return xgb is not None and isinstance(model, xgb.XGBModel | xgb.Booster)

    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        model.save_model(folder / FILE)
        return {
            "file": FILE,
            "class": type(model).__name__,
            "xgboost_version": framework_version("xgboost"),
        }

    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        xgb = import_framework("xgboost", self.extra)
        cls_name = str(meta.get("class", "Booster"))
        if cls_name not in CLASSES:
            raise InputDataError(
                f"model.toml names XGBoost class {cls_name!r}, not one of {', '.join(CLASSES)}",
                hint="the package is damaged or made by a newer modelcycle",
            )
        model = getattr(xgb, cls_name)()
        model.load_model(folder / str(meta.get("file", FILE)))
        return model

    def predict(self, model: Any, data: Any) -> Any:
        xgb = import_framework("xgboost", self.extra)
        if isinstance(model, xgb.Booster):
            return model.predict(xgb.DMatrix(tabular(data, model.feature_names)))
        return model.predict(tabular(data, _feature_names(model)))

    def has_predict_proba(self, model: Any) -> bool:
        return hasattr(model, "predict_proba")

    def predict_proba(self, model: Any, data: Any) -> Any:
        if not self.has_predict_proba(model):
            return super().predict_proba(model, data)
        return model.predict_proba(tabular(data, _feature_names(model)))

    def requirements(self, model: Any) -> list[str]:
        extra = () if type(model).__name__ == "Booster" else ("sklearn",)
        return pinned(*self.modules, *extra)


def _feature_names(model: Any) -> list[str] | None:
    try:
        names = model.feature_names_in_
    except AttributeError:
        return None
    return [str(n) for n in names]
