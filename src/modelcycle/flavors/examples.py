"""Input examples on disk: frames as Parquet, everything else as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.flavors.inputs import is_instance, is_pandas_frame, is_polars_frame

STEM = "input_example"


def write_example(example: Any, folder: Path) -> dict[str, str]:
    """Write ``example`` into ``folder``; return ``{"file": ..., "kind": ...}`` for model.toml."""
    if is_pandas_frame(example):
        path = folder / f"{STEM}.parquet"
        example.to_parquet(path, index=False)
        return {"file": path.name, "kind": "pandas"}
    if is_polars_frame(example):
        path = folder / f"{STEM}.parquet"
        example.write_parquet(path)
        return {"file": path.name, "kind": "polars"}
    if is_instance(example, "torch", "Tensor"):
        example = example.detach().cpu().numpy()
    if isinstance(example, np.ndarray):
        kind, body = "ndarray", {"dtype": str(example.dtype), "data": example.tolist()}
    elif isinstance(example, dict):
        kind, body = "columns", {"data": {str(k): _plain(v) for k, v in example.items()}}
    elif isinstance(example, list | tuple):
        kind, body = "list", {"data": _plain(example)}
    else:
        raise UsageError(
            f"cannot store an input example of type {type(example).__name__}",
            hint="pass a pandas or polars DataFrame, a numpy array, a dict of columns or a list",
        )
    path = folder / f"{STEM}.json"
    try:
        path.write_text(json.dumps(body), encoding="utf-8")
    except TypeError as e:
        raise UsageError(
            f"the input example holds values that are not JSON ({e})",
            hint="pass a DataFrame (stored as Parquet) or plain numbers and strings",
        ) from e
    return {"file": path.name, "kind": kind}


def read_example(folder: Path, entry: dict[str, Any]) -> Any:
    """The input example described by ``entry`` (as written by `write_example`)."""
    path = folder / str(entry.get("file", ""))
    kind = entry.get("kind")
    if not path.is_file():
        raise InputDataError(f"the package's input example {path} is missing")
    if kind == "pandas":
        import pandas as pd

        return pd.read_parquet(path)
    if kind == "polars":
        import polars as pl

        return pl.read_parquet(path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputDataError(f"{path} is not valid JSON: {e}") from e
    if kind == "ndarray":
        return np.asarray(body["data"], dtype=body.get("dtype"))
    return body["data"]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if is_instance(value, "pandas", "Series") or is_instance(value, "polars", "Series"):
        return value.to_list()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
