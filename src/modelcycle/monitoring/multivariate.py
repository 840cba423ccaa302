"""Multivariate drift: PCA reconstruction error, with thresholds from reference chunks.

Per-column tests miss a change in how columns move together (the correlation between two
columns flips while each keeps its distribution). PCA fitted on the reference captures
its joint structure: the components that explain `variance` (65 %) of it. A row's
reconstruction error is the distance between the row (standardised) and its projection
back from those components; when the joint structure changes, the error grows.

- Numerical columns are standardised with the reference's mean and standard deviation;
  missing values become the mean. Categorical columns with at most `MAX_CATEGORIES`
  categories are one-hot encoded (missing and unseen categories: all zeros). Other
  columns are left out and listed.
- PCA is fitted on at most `FIT_ROWS` reference rows, evenly spaced.
- The reference is cut into `chunks` consecutive chunks; the band is the mean of their
  errors ± 3 standard deviations. The current data is cut into chunks of the same size
  (each flagged when outside the band), and drifts when its error over all rows is.

Rows are read in batches, so memory holds one batch, never the whole table.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.monitoring import kinds as k
from modelcycle.monitoring.sources import TableSource

FIT_ROWS = 100_000
BATCH_ROWS = 65_536
MAX_CATEGORIES = 50
SIGMAS = 3.0


@dataclass(frozen=True)
class Chunk:
    start: int
    rows: int
    error: float
    alert: bool

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "rows": self.rows, "error": self.error, "alert": self.alert}


@dataclass
class MultivariateResult:
    status: str  # ok / no_data
    columns: list[str]
    excluded: dict[str, str]
    components: int = 0
    explained_variance: float = 0.0
    reference_error: float = math.nan
    lower: float = math.nan
    upper: float = math.nan
    current_error: float = math.nan
    drifted: bool = False
    reference_chunks: list[Chunk] = field(default_factory=list)
    current_chunks: list[Chunk] = field(default_factory=list)
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "method": "pca_reconstruction_error",
            "status": self.status,
            "drifted": self.drifted,
            "current_error": num(self.current_error),
            "reference_error": num(self.reference_error),
            "lower": num(self.lower),
            "upper": num(self.upper),
            "components": self.components,
            "explained_variance": self.explained_variance,
            "columns": self.columns,
            "excluded": self.excluded,
            "reference_chunks": [c.to_dict() for c in self.reference_chunks],
            "current_chunks": [c.to_dict() for c in self.current_chunks],
            "message": self.message,
        }


@dataclass
class _Encoder:
    numeric: list[str]
    means: Any
    stds: Any
    categorical: dict[str, list[str]]

    @property
    def columns(self) -> list[str]:
        return self.numeric + list(self.categorical)

    def encode(self, frame: pl.DataFrame) -> Any:
        parts = []
        if self.numeric:
            x = (
                frame.select(pl.col(c).cast(pl.Float64) for c in self.numeric)
                .to_numpy()
                .astype(np.float64)
            )
            x = (x - self.means) / self.stds
            x[~np.isfinite(x)] = 0.0
            parts.append(x)
        for name, cats in self.categorical.items():
            values = frame.get_column(name).cast(pl.String).to_numpy()
            parts.append((values[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(float))
        return np.hstack(parts)


def multivariate_drift(
    reference: TableSource,
    current: TableSource,
    *,
    columns: Sequence[str] | None = None,
    chunks: int = 10,
    variance: float = 0.65,
) -> MultivariateResult:
    """PCA reconstruction-error drift of ``current`` against ``reference``."""
    from sklearn.decomposition import PCA

    if chunks < 2:
        raise UsageError(f"chunks={chunks}: need at least 2", hint="the default is 10")
    if not 0 < variance < 1:
        raise UsageError(f"variance={variance} is not in (0, 1)", hint="the default is 0.65")
    ref_rows = reference.num_rows()
    if ref_rows < chunks * 2:
        raise InputDataError(
            f"{reference.label} has {ref_rows} rows: too few for {chunks} chunks",
            hint="use a larger reference or fewer chunks",
        )
    names = list(columns) if columns is not None else list(reference.schema())
    sample = _fit_sample(reference, names, ref_rows)
    encoder, excluded = _encoder(sample, names, current.schema())
    if not encoder.columns:
        return MultivariateResult(
            "no_data", [], excluded, message="no numerical or categorical column to use"
        )
    fit = encoder.encode(sample)
    pca = PCA(n_components=variance, svd_solver="full") if fit.shape[1] > 1 else None
    if pca is not None:
        pca.fit(fit)

    def errors(frame: pl.DataFrame) -> Any:
        x = encoder.encode(frame)
        if pca is None:  # one column: no structure to learn, the error is the deviation
            return np.abs(x[:, 0])
        back = pca.inverse_transform(pca.transform(x))
        return np.linalg.norm(x - back, axis=1)

    size = math.ceil(ref_rows / chunks)
    ref_means = _chunk_means(
        (errors(f) for f in reference.batches(encoder.columns, BATCH_ROWS)), size
    )
    values = np.array([c[2] for c in ref_means])
    centre, spread = float(values.mean()), float(values.std())
    lower, upper = centre - SIGMAS * spread, centre + SIGMAS * spread
    result = MultivariateResult(
        "ok",
        encoder.columns,
        excluded,
        components=int(pca.n_components_) if pca is not None else 1,
        explained_variance=float(pca.explained_variance_ratio_.sum()) if pca is not None else 1.0,
        reference_error=centre,
        lower=lower,
        upper=upper,
        reference_chunks=[Chunk(s, n, e, not lower <= e <= upper) for s, n, e in ref_means],
    )
    if current.num_rows() == 0:
        result.status, result.message = "no_data", "the current data has no rows"
        return result
    cur_means = _chunk_means(
        (errors(f) for f in current.batches(encoder.columns, BATCH_ROWS)), size
    )
    total = sum(n * e for _, n, e in cur_means)
    result.current_error = total / sum(n for _, n, _ in cur_means)
    result.current_chunks = [Chunk(s, n, e, not lower <= e <= upper) for s, n, e in cur_means]
    result.drifted = not lower <= result.current_error <= upper
    return result


def _fit_sample(source: TableSource, names: Sequence[str], rows: int) -> pl.DataFrame:
    step = max(1, math.ceil(rows / FIT_ROWS))
    parts, seen = [], 0
    for batch in source.batches(names, BATCH_ROWS):
        first = (-seen) % step
        parts.append(batch.gather_every(step, offset=first) if first < batch.height else batch[:0])
        seen += batch.height
    return pl.concat(parts)


def _encoder(
    sample: pl.DataFrame, names: Sequence[str], current: dict[str, pl.DataType]
) -> tuple[_Encoder, dict[str, str]]:
    numeric: list[str] = []
    categorical: dict[str, list[str]] = {}
    excluded: dict[str, str] = {}
    for name in names:
        series = sample.get_column(name)
        family = k.dtype_family(series.dtype)
        if name not in current:
            excluded[name] = "not in the current data"
        elif family in ("float", "integer"):
            if series.drop_nulls().len() == 0:
                excluded[name] = "every value is missing"
            else:
                numeric.append(name)
        elif family in ("string", "category", "boolean"):
            cats = series.cast(pl.String).drop_nulls().unique().sort().to_list()
            if 0 < len(cats) <= MAX_CATEGORIES:
                categorical[name] = cats
            else:
                excluded[name] = f"{len(cats)} categories (at most {MAX_CATEGORIES} are encoded)"
        else:
            excluded[name] = f"a {series.dtype} column"
    x = sample.select(pl.col(c).cast(pl.Float64) for c in numeric).to_numpy()
    x = np.where(np.isfinite(x), x, np.nan) if numeric else np.empty((0, 0))
    means = np.nanmean(x, axis=0) if numeric else np.empty(0)
    stds = np.nanstd(x, axis=0) if numeric else np.empty(0)
    stds = np.where(stds > 0, stds, 1.0)
    return _Encoder(numeric, means, stds, categorical), excluded


def _chunk_means(errors: Iterator[Any], size: int) -> list[tuple[int, int, float]]:
    """(first row, rows, mean error) per consecutive chunk of ``size`` rows; a last chunk
    of less than half a chunk joins the one before it."""
    out: list[tuple[int, int, float]] = []
    start, count, total = 0, 0, 0.0
    for err in errors:
        i = 0
        while i < len(err):
            take = min(size - count, len(err) - i)
            total += float(err[i : i + take].sum())
            count += take
            i += take
            if count == size:
                out.append((start, count, total))
                start, count, total = start + size, 0, 0.0
    if count:
        if out and count < size / 2:
            s, n, t = out.pop()
            out.append((s, n + count, t + total))
        else:
            out.append((start, count, total))
    return [(s, n, t / n) for s, n, t in out]
