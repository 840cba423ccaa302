"""What flows into and out of a model: rows of input, predictions, and batches of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Data = np.ndarray[Any, Any] | dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, slots=True)
class ModelInput:
    """Rows ready for a model: a 2-D (or n-D tensor) array, or a dict of 1-D columns."""

    rows: int
    data: Data
    #: column names of a 2-D numeric table (its columns in order); None for tensors
    names: tuple[str, ...] | None = None

    def to_log(self) -> dict[str, Any]:
        if isinstance(self.data, dict):
            return {k: v.tolist() for k, v in self.data.items()}
        if self.names is not None:
            return {n: self.data[:, i].tolist() for i, n in enumerate(self.names)}
        return {"tensor": self.data.tolist()}


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer for some rows: one value per row, and class probabilities."""

    values: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None = None

    def split(self, sizes: Sequence[int]) -> list[Prediction]:
        out, start = [], 0
        for n in sizes:
            proba = None if self.probabilities is None else self.probabilities[start : start + n]
            out.append(Prediction(self.values[start : start + n], proba))
            start += n
        return out

    def to_log(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prediction": self.values.tolist()}
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities.tolist()
        return out


def concat(inputs: Sequence[ModelInput]) -> ModelInput:
    """One input holding the rows of all ``inputs`` (which share a schema) in order."""
    if len(inputs) == 1:
        return inputs[0]
    first = inputs[0]
    rows = sum(i.rows for i in inputs)
    if isinstance(first.data, dict):
        parts: list[dict[str, np.ndarray[Any, Any]]] = [i.data for i in inputs]  # type: ignore[misc]
        return ModelInput(rows, {k: np.concatenate([p[k] for p in parts]) for k in first.data})
    arrays: list[np.ndarray[Any, Any]] = [i.data for i in inputs]  # type: ignore[misc]
    return ModelInput(rows, np.concatenate(arrays), first.names)
