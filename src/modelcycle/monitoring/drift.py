"""Column-by-column drift between a reference and current data, and the dataset verdict.

Each column is compared on its own, in parallel (one worker per core): its reference
sketch (stored, or computed from the reference's column), the current column read from
disk, the test (Evidently's default choice, or one named by the caller), a verdict and
two histograms for the report. The dataset drifts when at least ``drift_share`` (0.5) of
the checked columns drift, as in Evidently.

Columns that cannot be checked are reported with a status and a message and left out of
the share: ``missing`` (not in the current data), ``no_data`` (every value missing on a
side, or no current rows at all), ``skipped`` (dates, nested or binary columns), and
``error`` (e.g. text in a numerical column).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelcycle.core.errors import UsageError
from modelcycle.core.text import suggest
from modelcycle.monitoring import kinds as k
from modelcycle.monitoring.sketches import (
    ColumnProblem,
    ColumnSketch,
    infer_column_kind,
    sketch_series,
)
from modelcycle.monitoring.sources import TableSource
from modelcycle.monitoring.stattests import StatTest, default_test, get_test

DRIFT_SHARE = 0.5
HIST_BINS = 20
MAX_CATEGORIES = 20


@dataclass(frozen=True)
class Histogram:
    """Shares of rows per bin (``edges``) or per category (``labels``), both sides."""

    reference: list[float]
    current: list[float]
    edges: list[float] | None = None
    labels: list[str] | None = None
    other: bool = False  # the last label gathers the remaining categories

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "current": self.current}
        if self.edges is not None:
            out["edges"] = self.edges
        if self.labels is not None:
            out["labels"] = self.labels
            out["other"] = self.other
        return out


@dataclass
class ColumnDrift:
    """The drift verdict of one column. ``score`` is what was compared with
    ``threshold``: the p-value of a hypothesis test, else the distance (``statistic``)."""

    column: str
    kind: str
    status: str  # ok / missing / no_data / skipped / error
    role: str = "feature"  # or "prediction"
    test: str | None = None
    test_title: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    score: float | None = None
    threshold: float | None = None
    drifted: bool = False
    exact: bool = True
    bounds: tuple[float, float] | None = None
    message: str | None = None
    reference_rows: int = 0
    current_rows: int = 0
    reference_missing: int = 0
    current_missing: int = 0
    histogram: Histogram | None = None

    def to_dict(self, histogram: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "column": self.column,
            "kind": self.kind,
            "role": self.role,
            "status": self.status,
            "test": self.test,
            "statistic": _num(self.statistic),
            "p_value": _num(self.p_value),
            "score": _num(self.score),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "exact": self.exact,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "reference_missing": self.reference_missing,
            "current_missing": self.current_missing,
        }
        if self.bounds is not None:
            out["bounds"] = [_num(b) for b in self.bounds]
        if self.message:
            out["message"] = self.message
        if histogram and self.histogram is not None:
            out["histogram"] = self.histogram.to_dict()
        return out


def _num(value: float | None) -> float | str | None:
    """JSON-safe: infinities as strings (a chi-square over a new category is infinite)."""
    if value is None or np.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf" if value < 0 else "nan"


@dataclass
class DriftResult:
    """Per-column verdicts and the dataset verdict."""

    reference: str
    current: str
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift]
    drift_share_threshold: float = DRIFT_SHARE
    reference_sketch: str = "data"  # data / stored / stored now
    seconds: float = 0.0
    extra_columns: list[str] = field(default_factory=list)
    multivariate: Any = None  # a MultivariateResult when asked for

    @property
    def checked(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.status == "ok"]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.checked if c.drifted]

    @property
    def drift_share(self) -> float:
        checked = self.checked
        return len(self.drifted_columns) / len(checked) if checked else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.checked) and self.drift_share >= self.drift_share_threshold

    @property
    def status(self) -> str:
        """``ok``, or ``no_data`` when nothing could be checked (e.g. no current rows)."""
        return "ok" if self.checked else "no_data"

    @property
    def prediction(self) -> ColumnDrift | None:
        return next((c for c in self.columns if c.role == "prediction"), None)

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == name:
                return c
        raise KeyError(name)

    def to_dict(self, histograms: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reference": {
                "source": self.reference,
                "rows": self.reference_rows,
                "sketch": self.reference_sketch,
            },
            "current": {"source": self.current, "rows": self.current_rows},
            "status": self.status,
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drift_share_threshold": self.drift_share_threshold,
            "number_of_columns": len(self.checked),
            "number_of_drifted_columns": len(self.drifted_columns),
            "drifted_columns": self.drifted_columns,
            "not_checked": {c.column: c.status for c in self.columns if c.status != "ok"},
            "extra_columns": self.extra_columns,
            "seconds": round(self.seconds, 3),
            "columns": [c.to_dict(histograms) for c in self.columns],
        }
        if self.prediction is not None:
            out["prediction_drift"] = self.prediction.drifted
        if self.multivariate is not None:
            out["multivariate"] = self.multivariate.to_dict()
        return out


@dataclass(frozen=True)
class DriftOptions:
    """What to compare and how. ``test``/``threshold`` apply to every column the test
    can check; ``tests``/``thresholds`` name a test or threshold per column."""

    columns: Sequence[str] | None = None
    test: str | None = None
    tests: Mapping[str, str] = field(default_factory=dict)
    threshold: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)
    prediction: str | None = None
    drift_share: float = DRIFT_SHARE
    workers: int | None = None

    def validate(self) -> None:
        for name in [self.test, *self.tests.values()]:
            if name is not None:
                get_test(name)
        for column, kind in self.kinds.items():
            if kind not in k.FORCEABLE:
                raise UsageError(
                    f"column {column!r}: {kind!r} is not a kind{suggest(kind, k.FORCEABLE)}",
                    hint=f"use one of: {', '.join(k.FORCEABLE)}",
                )
        if not 0 < self.drift_share <= 1:
            raise UsageError(
                f"drift_share {self.drift_share} is not in (0, 1]",
                hint="0.5 flags the dataset when half of its columns drift",
            )


class Reference:
    """The reference side: stored sketches and/or the data they were made from."""

    def __init__(self, source: TableSource | None, stored: list[ColumnSketch] | None) -> None:
        if source is None and stored is None:
            raise ValueError("a reference needs a source or stored sketches")
        self.source = source
        self.stored = {s.name: s for s in stored} if stored is not None else None
        self.label = source.label if source is not None else "sketch"

    def columns(self) -> list[str]:
        if self.stored is not None:
            return list(self.stored)
        assert self.source is not None
        return list(self.source.schema())

    def num_rows(self) -> int:
        if self.stored:
            return next(iter(self.stored.values())).rows
        return self.source.num_rows() if self.source is not None else 0

    def sketch(self, name: str, kind: str | None) -> tuple[ColumnSketch, bool]:
        """(the column's sketch as ``kind`` — default: its inferred kind —, whether it
        was computed from the data now)."""
        stored = self.stored.get(name) if self.stored is not None else None
        if stored is not None and (kind is None or kind == stored.kind):
            return stored, False
        return self.data(name, kind), True

    def data(self, name: str, kind: str | None) -> ColumnSketch:
        """The column's sketch with its rows, read from the source."""
        if self.source is None:
            raise ColumnProblem("the reference's data is not available, only its sketch")
        series = self.source.column(name)
        return sketch_series(name, series, kind or infer_column_kind(series))


def compare(
    reference: Reference, current: TableSource, options: DriftOptions, *, keep: bool = False
) -> tuple[DriftResult, dict[str, ColumnSketch]]:
    """Compare every column; return the result and (with ``keep``) the reference sketches
    computed from data on the way, with their inferred kind, ready to be stored."""
    started = time.perf_counter()
    options.validate()
    names = reference.columns()
    if options.columns is not None:
        unknown = [c for c in options.columns if c not in names]
        if unknown:
            raise UsageError(
                f"{reference.label} has no column {unknown[0]!r}{suggest(unknown[0], names)}",
                hint=f"its columns: {', '.join(names[:30])}",
            )
        names = list(dict.fromkeys(options.columns))
    if options.prediction is not None and options.prediction not in names:
        raise UsageError(
            f"the prediction column {options.prediction!r} is not among the compared columns",
            hint=f"the columns: {', '.join(names[:30])}",
        )
    for column in [*options.tests, *options.thresholds, *options.kinds]:
        if column not in names:
            raise UsageError(
                f"an option names column {column!r}, which is not compared{suggest(column, names)}",
                hint=f"the columns: {', '.join(names[:30])}",
            )
    current_schema = current.schema()
    current_rows = current.num_rows()
    workers = options.workers or min(len(names), os.cpu_count() or 1) or 1

    def one(name: str) -> tuple[ColumnDrift, ColumnSketch | None]:
        return check_column(name, reference, current, current_schema, current_rows, options, keep)

    if workers > 1 and len(names) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
            outcomes = list(pool.map(one, names))
    else:
        outcomes = [one(name) for name in names]
    fresh = {s.name: s for _, s in outcomes if s is not None}
    result = DriftResult(
        reference=reference.label,
        current=current.label,
        reference_rows=reference.num_rows(),
        current_rows=current_rows,
        columns=[c for c, _ in outcomes],
        drift_share_threshold=options.drift_share,
        extra_columns=[c for c in current_schema if c not in reference.columns()],
    )
    result.seconds = time.perf_counter() - started
    return result, fresh


def check_column(
    name: str,
    reference: Reference,
    current: TableSource,
    current_schema: Mapping[str, Any],
    current_rows: int,
    options: DriftOptions,
    keep_sketch: bool = False,
) -> tuple[ColumnDrift, ColumnSketch | None]:
    """One column's verdict, and (with ``keep_sketch``) its reference sketch if it was
    computed from data with the inferred kind (to be stored)."""
    role = "prediction" if name == options.prediction else "feature"
    forced = options.kinds.get(name)
    try:
        ref, computed = reference.sketch(name, forced)
    except ColumnProblem as e:
        return ColumnDrift(name, forced or "?", "error", role, message=str(e)), None
    keep = ref.for_storage() if keep_sketch and computed and forced is None else None
    out = ColumnDrift(
        name,
        ref.kind,
        "ok",
        role,
        reference_rows=ref.n,
        reference_missing=ref.nulls,
    )
    if ref.kind not in k.CHECKED:
        out.status = "no_data" if ref.kind == k.EMPTY else "skipped"
        out.message = {
            k.EMPTY: "every reference value is missing",
            k.DATETIME: "dates and times are not checked for drift",
        }.get(ref.kind, "; ".join(ref.notes) or f"a {ref.dtype} column is not checked for drift")
        return out, keep
    if name not in current_schema:
        out.status, out.message = "missing", "not in the current data"
        return out, keep
    if current_rows == 0:
        out.status, out.message = "no_data", "the current data has no rows"
        return out, keep
    try:
        cur = sketch_series(name, current.column(name), ref.kind, moments=False)
    except ColumnProblem as e:
        out.status, out.message = "error", f"current data: {e}"
        return out, keep
    out.current_rows, out.current_missing = cur.n, cur.nulls
    if ref.n == 0 or cur.n == 0:
        side = "reference" if ref.n == 0 else "current"
        out.status, out.message = "no_data", f"every {side} value is missing"
        return out, keep
    try:
        _run_test(out, ref, cur, reference, options)
    except ColumnProblem as e:
        out.status, out.message = "error", str(e)
    return out, keep


def _choose(name: str, ref: ColumnSketch, cur: ColumnSketch, options: DriftOptions) -> StatTest:
    named = options.tests.get(name)
    if named is not None:
        test = get_test(named)
        if ref.kind not in test.kinds:
            raise ColumnProblem(
                f"{test.name} cannot check a {ref.kind} column (it checks "
                f"{' and '.join(test.kinds)} columns)"
            )
        return test
    if options.test is not None:
        test = get_test(options.test)
        if ref.kind in test.kinds:
            return test
    return default_test(ref, cur)


def _run_test(
    out: ColumnDrift,
    ref: ColumnSketch,
    cur: ColumnSketch,
    reference: Reference,
    options: DriftOptions,
) -> None:
    test = _choose(out.column, ref, cur, options)
    threshold = options.thresholds.get(out.column)
    if threshold is None and (options.test is None or test.name == get_test(options.test).name):
        threshold = options.threshold
    notes = []
    if test.needs_data and not ref.has_data:
        ref = reference.data(out.column, ref.kind)
        notes.append("read the reference rows (the sketch does not hold them)")
    outcome = test.check(ref, cur, threshold)
    if outcome.undecided:
        try:
            ref = reference.data(out.column, ref.kind)
        except ColumnProblem:
            notes.append("the verdict is uncertain: the sketch's bounds straddle the threshold")
        else:
            outcome = test.check(ref, cur, threshold)
            notes.append(
                "recomputed from the reference rows: the sketch's bounds straddled the threshold"
            )
    if outcome.lower is not None and outcome.upper is not None:
        out.exact = False
        out.bounds = (outcome.lower, outcome.upper)
    if outcome.note:
        notes.append(outcome.note)
    out.test, out.test_title = test.name, test.title
    out.threshold = test.threshold if threshold is None else threshold
    out.statistic, out.p_value, out.score = outcome.statistic, outcome.p_value, outcome.score
    out.drifted = outcome.drifted
    if ref.kind == k.NUMERICAL and ref.std == 0 and cur.distinct == 1:
        notes.append("constant on both sides")
    out.message = "; ".join(notes) or None
    out.histogram = histogram(ref, cur)


# -- histograms ------------------------------------------------------------------------------
def histogram(ref: ColumnSketch, cur: ColumnSketch) -> Histogram | None:
    """Reference and current shares per bin or category, for the report."""
    if ref.kind == k.CATEGORICAL or (
        ref.kind == k.NUMERICAL
        and ref.has_data
        and ref.distinct <= MAX_CATEGORIES
        and cur.distinct <= MAX_CATEGORIES
    ):
        return _category_histogram(ref.frequencies(), cur.frequencies(), ref.n, cur.n)
    if ref.kind != k.NUMERICAL:
        return None
    assert ref.min is not None and ref.max is not None
    assert cur.min is not None and cur.max is not None
    lo, hi = min(ref.min, cur.min), max(ref.max, cur.max)
    edges = np.linspace(lo, hi, HIST_BINS + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    return Histogram(
        [float(v) for v in _below(ref, edges)],
        [float(v) for v in _below(cur, edges)],
        edges=[float(e) for e in edges],
    )


def _below(side: ColumnSketch, edges: Any) -> Any:
    """Shares per bin [e_i, e_i+1) (the last bin closed); a compressed sketch's cells are
    spread evenly over their range (the report's bars only)."""
    inner = edges[1:-1]
    if side.has_data:
        values = side.sorted_values()
        below = np.searchsorted(values, inner, side="left")
    else:
        assert side.cells is not None
        c = side.cells
        width = np.where(c.hi > c.lo, c.hi - c.lo, 1.0)
        part = np.clip((inner[:, None] - c.lo) / width, 0.0, 1.0)
        part = np.where(c.hi > c.lo, part, (c.lo < inner[:, None]).astype(np.float64))
        below = (part * c.count).sum(axis=1)
    cumulative = np.concatenate(([0.0], below, [side.n]))
    return np.diff(cumulative) / side.n


def _category_histogram(
    ref: Mapping[Any, int], cur: Mapping[Any, int], n_ref: int, n_cur: int
) -> Histogram:
    keys = sorted(
        ref.keys() | cur.keys(), key=lambda x: -max(ref.get(x, 0) / n_ref, cur.get(x, 0) / n_cur)
    )
    shown, rest = keys[:MAX_CATEGORIES], keys[MAX_CATEGORIES:]
    if all(isinstance(x, float) for x in shown):
        shown = sorted(shown)
    r = [ref.get(x, 0) / n_ref for x in shown]
    c = [cur.get(x, 0) / n_cur for x in shown]
    labels = [_label(x) for x in shown]
    if rest:
        r.append(sum(ref.get(x, 0) for x in rest) / n_ref)
        c.append(sum(cur.get(x, 0) for x in rest) / n_cur)
        labels.append(f"{len(rest):,} others")
    return Histogram(r, c, labels=labels, other=bool(rest))


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
