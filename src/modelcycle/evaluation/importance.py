"""Permutation importance: how much a metric drops when one column's values are shuffled.

Model-agnostic: it needs only a function from a frame to predictions. All rows are the
same seeded sample; for each column the ``repeats`` shuffles are stacked into one frame
and predicted in one call, so a model is called once per column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

Array = np.ndarray[Any, Any]


def permutation_importance(
    predict: Callable[[pd.DataFrame], Array],
    score: Callable[[Array], float],
    sample: pd.DataFrame,
    *,
    repeats: int,
    rng: np.random.Generator,
    higher_is_better: bool = True,
) -> list[dict[str, Any]]:
    """``[{"feature", "mean", "std"}]`` sorted by mean drop, largest first.

    ``predict`` maps a frame to predictions (labels or probabilities), ``score`` maps
    predictions for ``sample``'s rows to the metric. A drop is baseline − shuffled for a
    metric where higher is better, shuffled − baseline otherwise, so a positive value
    always means the model relies on the column.
    """
    m = len(sample)
    baseline = score(predict(sample))
    stacked = pd.concat([sample] * repeats, ignore_index=True)
    sign = 1.0 if higher_is_better else -1.0
    out: list[dict[str, Any]] = []
    for column in sample.columns:
        shuffles = [rng.permutation(m) for _ in range(repeats)]
        shuffled = stacked.copy(deep=False)
        values = sample[column]
        shuffled[column] = pd.concat([values.iloc[p] for p in shuffles], ignore_index=True)
        predictions = predict(shuffled)
        drops = np.array(
            [sign * (baseline - score(predictions[r * m : (r + 1) * m])) for r in range(repeats)]
        )
        out.append(
            {"feature": _name(column), "mean": float(drops.mean()), "std": float(drops.std())}
        )
    out.sort(key=lambda row: -row["mean"])
    return out


def _name(column: Any) -> str:
    return column if isinstance(column, str) else str(column)
