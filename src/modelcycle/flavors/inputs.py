"""Turn what callers pass to ``predict`` into what frameworks take.

Accepted everywhere: numpy arrays, pandas and polars frames and series, dicts of columns
(``{"age": [31, 45]}``), lists of records (``[{"age": 31}]``), nested lists, and torch
tensors. pandas and polars are looked up in ``sys.modules`` instead of being imported: data
can only be a frame if its library is loaded already.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelcycle.core.errors import InputDataError


def is_instance(obj: Any, module: str, attr: str) -> bool:
    """``isinstance(obj, module.attr)`` without importing ``module``."""
    mod = sys.modules.get(module)
    cls = getattr(mod, attr, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def is_pandas_frame(data: Any) -> bool:
    return is_instance(data, "pandas", "DataFrame")


def is_polars_frame(data: Any) -> bool:
    return is_instance(data, "polars", "DataFrame")


def is_frame(data: Any) -> bool:
    return is_pandas_frame(data) or is_polars_frame(data)


def is_records(data: Any) -> bool:
    return isinstance(data, list) and bool(data) and all(isinstance(r, Mapping) for r in data)


def is_columns(data: Any) -> bool:
    return isinstance(data, Mapping)


def to_pandas(data: Any) -> Any:
    """A pandas DataFrame from a frame, a dict of columns or a list of records."""
    import pandas as pd

    if is_pandas_frame(data):
        return data
    if is_polars_frame(data):
        return data.to_pandas()
    if is_columns(data):
        return pd.DataFrame({k: _column(v) for k, v in data.items()})
    if is_records(data):
        return pd.DataFrame.from_records(data)
    return pd.DataFrame(to_numpy(data))


def to_numpy(data: Any) -> np.ndarray[Any, Any]:
    """A numpy array; frames and dicts of columns become 2-D, columns in order."""
    if isinstance(data, np.ndarray):
        return data
    if is_instance(data, "torch", "Tensor"):
        return np.asarray(data.detach().cpu().numpy())
    if (
        is_frame(data)
        or is_instance(data, "pandas", "Series")
        or is_instance(data, "polars", "Series")
    ):
        return np.asarray(data.to_numpy())
    if is_columns(data) or is_records(data):
        return np.asarray(to_pandas(data).to_numpy())
    return np.asarray(data)


def tabular(data: Any, feature_names: Sequence[str] | None) -> Any:
    """Data for a tabular model fitted with ``feature_names`` (a frame) or without (an array).

    Matching what the model was fitted on avoids scikit-learn's feature-name warnings, and
    lets plain JSON lists reach a model fitted on a DataFrame.
    """
    if feature_names is None:
        return to_numpy(data)
    names = [str(n) for n in feature_names]
    if is_frame(data) or is_columns(data) or is_records(data):
        frame = to_pandas(data)
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise InputDataError(
                f"input is missing column(s) {', '.join(map(repr, missing))}",
                hint=f"the model was fitted on columns {names}",
            )
        return frame[names]
    import pandas as pd

    array = to_numpy(data)
    if array.ndim == 2 and array.shape[1] == len(names):
        return pd.DataFrame(array, columns=names)
    return array


def _column(values: Any) -> Any:
    return values if isinstance(values, np.ndarray) else list(values)
