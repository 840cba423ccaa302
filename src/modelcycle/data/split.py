"""Deterministic train/validation/test splits, optionally stratified or grouped."""

from __future__ import annotations

import numpy as np
import polars as pl

from modelcycle.core.errors import UsageError
from modelcycle.data.yamlio import suggest

DEFAULT_NAMES = ("train", "validation", "test")


def parse_ratios(text: str | list[float]) -> list[float]:
    try:
        ratios = [float(x) for x in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise UsageError(
            f"--ratios {text!r} must be comma-separated numbers", hint="e.g. --ratios 0.7,0.15,0.15"
        ) from None
    if not 2 <= len(ratios) <= 3 or any(r <= 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise UsageError(
            f"--ratios {text!r} must be 2 or 3 positive numbers adding up to 1",
            hint="e.g. --ratios 0.7,0.15,0.15 or 0.8,0.2",
        )
    return ratios


def _allocate(n: int, ratios: list[float]) -> list[int]:
    """Split ``n`` into counts by ``ratios`` (largest remainder, so they add up to n)."""
    raw = [r * n for r in ratios]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[
        : n - sum(counts)
    ]:
        counts[i] += 1
    return counts


def assign(
    df: pl.DataFrame,
    ratios: list[float],
    seed: int,
    stratify: str | None = None,
    group: str | None = None,
) -> np.ndarray:
    """The part (0, 1, 2) of every row."""
    for col in (stratify, group):
        if col is not None and col not in df.columns:
            raise UsageError(
                f"column {col!r} does not exist{suggest(col, df.columns)}",
                hint=f"columns are: {', '.join(df.columns)}",
            )
    if stratify and group:
        raise UsageError("--stratify and --group cannot be combined", hint="choose one")
    rng = np.random.default_rng(seed)
    parts = np.zeros(df.height, dtype=np.int8)
    if group:
        codes = (
            df.get_column(group).cast(pl.String).fill_null("\0null").rank("dense").to_numpy() - 1
        )
        sizes = np.bincount(codes)
        order = rng.permutation(len(sizes))
        targets = np.cumsum(np.array(ratios) * df.height)
        group_part = np.zeros(len(sizes), dtype=np.int8)
        filled = 0
        for g in order:
            part = int(np.searchsorted(targets, filled + sizes[g] / 2))
            group_part[g] = min(part, len(ratios) - 1)
            filled += sizes[g]
        out: np.ndarray = group_part[codes]
        return out
    if stratify:
        labels = df.get_column(stratify).cast(pl.String).fill_null("\0null").to_numpy()
        for value in sorted(set(labels.tolist())):
            idx = np.flatnonzero(labels == value)
            _fill(parts, rng.permutation(idx), ratios)
        return parts
    _fill(parts, rng.permutation(df.height), ratios)
    return parts


def _fill(parts: np.ndarray, idx: np.ndarray, ratios: list[float]) -> None:
    start = 0
    for part, count in enumerate(_allocate(len(idx), ratios)):
        parts[idx[start : start + count]] = part
        start += count
