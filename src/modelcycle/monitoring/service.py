"""Drift between a reference and current data, behind ``Workspace.drift``.

A side may also be ``deployment:NAME[:WINDOW]``: the inputs a deployment logged over the
last WINDOW (1h by default).

`DriftService` receives the sketch records, the dataset service and the blob store; it
opens nothing itself. Each side of a comparison is a dataset ref (``NAME@REF``), a file
(Parquet, CSV, TSV, JSON Lines) or a pandas/polars DataFrame. A string that names an
existing file is read as that file; write ``NAME@latest`` to mean the dataset.

A dataset version used as a reference gets its sketch (per-column summaries, see
`modelcycle.monitoring.sketches`) computed on first use and stored with the version;
later comparisons read the sketch, not the reference's rows, except for the few
columns whose test needs them (text, or a Wasserstein distance whose error bound
straddles the threshold).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import (
    BlobCorruptedError,
    InputDataError,
    NotFoundError,
    StorageError,
    UsageError,
)

if TYPE_CHECKING:
    from modelcycle.blobs import BlobStore
    from modelcycle.data.service import DatasetService
    from modelcycle.monitoring.drift import DriftResult
    from modelcycle.monitoring.estimate import PerformanceEstimate
    from modelcycle.monitoring.multivariate import MultivariateResult
    from modelcycle.monitoring.sketches import ColumnSketch
    from modelcycle.monitoring.sources import TableSource
    from modelcycle.store.metadata import VersionRecord
    from modelcycle.store.sketches import SketchRow, SketchStore

SKETCH_KIND = "drift"
TRAFFIC_PREFIX = "deployment:"
TRAFFIC_HINT = (
    "write deployment:NAME for a deployment's logged inputs over the last hour, or "
    "deployment:NAME:24h for another window"
)


@dataclass(frozen=True)
class SketchInfo:
    """A stored sketch: its version, blob and size, and whether it was made now."""

    ref: str
    oid: str
    size_bytes: int
    columns: int
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "oid": self.oid,
            "size_bytes": self.size_bytes,
            "columns": self.columns,
            "created": self.created,
        }


class DriftService:
    def __init__(self, store: SketchStore, datasets: DatasetService, blobs: BlobStore) -> None:
        self.store = store
        self.datasets = datasets
        self.blobs = blobs
        # Reads a deployment's logged inputs over the last N seconds (the workspace wires
        # it to the prediction log): what ``deployment:NAME[:WINDOW]`` sides compare.
        self.traffic: Callable[[str, float], Any] | None = None

    # -- comparing ----------------------------------------------------------------------------
    def drift(
        self,
        reference: Any,
        current: Any,
        *,
        columns: Sequence[str] | None = None,
        test: str | None = None,
        tests: Mapping[str, str] | None = None,
        threshold: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        kinds: Mapping[str, str] | None = None,
        prediction: str | None = None,
        drift_share: float = 0.5,
        multivariate: bool = False,
        use_sketch: bool = True,
        workers: int | None = None,
    ) -> DriftResult:
        """Compare ``current`` with ``reference`` column by column; see `DriftResult`.

        ``test``/``threshold`` replace the default test/threshold for every column the
        test can check (``"psi"``, ``"ks"`` …, see `modelcycle.monitoring.stattests`);
        ``tests``/``thresholds`` do so per column. ``kinds`` forces a column's kind
        (``numerical``, ``categorical``, ``text``, ``embedding``). ``prediction`` names
        the column of model outputs (reported as prediction drift). ``multivariate``
        adds the PCA reconstruction-error check. ``use_sketch=False`` reads the
        reference's rows even when a sketch is stored.
        """
        from modelcycle.monitoring.drift import DriftOptions, Reference, compare

        options = DriftOptions(
            columns=list(columns) if columns is not None else None,
            test=test,
            tests=dict(tests or {}),
            threshold=threshold,
            thresholds=dict(thresholds or {}),
            kinds=dict(kinds or {}),
            prediction=prediction,
            drift_share=drift_share,
            workers=workers,
        )
        options.validate()
        with self._scratch() as scratch:
            ref_source = self.source(reference, scratch)
            cur_source = self.source(current, scratch)
            version = ref_source.version
            row = stored = None
            if version is not None and use_sketch:
                row, stored = self._stored_sketch(version)
            store_now = version is not None and use_sketch and stored is None
            result, fresh = compare(
                Reference(ref_source, stored), cur_source, options, keep=store_now
            )
            if stored is not None:
                result.reference_sketch = "stored"
            elif store_now:
                assert version is not None
                self._store_sketch(version, ref_source, fresh, row, workers)
                result.reference_sketch = "stored now"
            if multivariate:
                from modelcycle.monitoring.multivariate import multivariate_drift

                result.multivariate = multivariate_drift(
                    ref_source, cur_source, columns=[c.column for c in result.checked]
                )
        return result

    def multivariate(
        self,
        reference: Any,
        current: Any,
        *,
        columns: Sequence[str] | None = None,
        chunks: int = 10,
        variance: float = 0.65,
    ) -> MultivariateResult:
        """Multivariate drift by PCA reconstruction error (see `multivariate_drift`)."""
        from modelcycle.monitoring.multivariate import multivariate_drift

        with self._scratch() as scratch:
            return multivariate_drift(
                self.source(reference, scratch),
                self.source(current, scratch),
                columns=columns,
                chunks=chunks,
                variance=variance,
            )

    def estimate_performance(
        self,
        reference: Any,
        current: Any,
        *,
        target: str,
        scores: Sequence[str] | str,
        classes: Sequence[Any] | None = None,
        chunk_size: int | None = None,
    ) -> PerformanceEstimate:
        """A classifier's accuracy, F1 and ROC AUC on unlabelled ``current`` data,
        estimated from its predicted probabilities calibrated on the labelled
        ``reference`` (see `modelcycle.monitoring.estimate`)."""
        from modelcycle.monitoring.estimate import estimate_performance

        score_columns = [scores] if isinstance(scores, str) else list(scores)
        with self._scratch() as scratch:
            ref, cur = self.source(reference, scratch), self.source(current, scratch)
            missing = [c for c in [target, *score_columns] if c not in ref.schema()]
            missing += [c for c in score_columns if c not in cur.schema()]
            if missing:
                raise UsageError(
                    f"column {missing[0]!r} is missing (reference: the target and scores; "
                    "current: the scores)",
                    hint="pass --target and the score columns the model wrote",
                )
            frame_ref = {c: ref.column(c) for c in [target, *score_columns]}
            frame_cur = {c: cur.column(c) for c in score_columns}
            if target in cur.schema():
                frame_cur[target] = cur.column(target)
        return estimate_performance(
            frame_ref,
            frame_cur,
            target=target,
            scores=score_columns,
            classes=classes,
            chunk_size=chunk_size,
        )

    def report(self, result: DriftResult, dest: str | os.PathLike[str]) -> Path:
        """Write the self-contained HTML report of ``result`` to ``dest``."""
        from modelcycle.monitoring.report import render_report

        out = Path(dest).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(render_report(result), encoding="utf-8")
        tmp.replace(out)
        return out

    # -- sketches ----------------------------------------------------------------------------
    def sketch(self, ref: str, *, workers: int | None = None) -> SketchInfo:
        """The stored sketch of dataset version ``ref``, computed now if it has none."""
        version = self._table_version(ref)
        row, stored = self._stored_sketch(version)
        if stored is not None and row is not None:
            return SketchInfo(version.ref, row.sketch_oid, row.size_bytes, len(stored), False)
        source = self._dataset_source(version)
        sketches = self._store_sketch(version, source, {}, row, workers)
        stored_row = self.store.find(version.id, SKETCH_KIND, _options_key())
        assert stored_row is not None
        return SketchInfo(
            version.ref, stored_row.sketch_oid, stored_row.size_bytes, len(sketches), True
        )

    def _stored_sketch(
        self, version: VersionRecord
    ) -> tuple[SketchRow | None, list[ColumnSketch] | None]:
        from modelcycle.monitoring.sketches import from_bytes

        row = self.store.find(version.id, SKETCH_KIND, _options_key())
        if row is None:
            return None, None
        try:
            sketches, _ = from_bytes(self.blobs.read_bytes(row.sketch_oid))
        except (NotFoundError, BlobCorruptedError):
            return row, None  # lost (e.g. collected before gc knew sketches): recompute
        return row, sketches

    def _store_sketch(
        self,
        version: VersionRecord,
        source: TableSource,
        fresh: dict[str, ColumnSketch],
        row: SketchRow | None,
        workers: int | None,
    ) -> list[ColumnSketch]:
        from modelcycle.core.hashing import hash_bytes
        from modelcycle.monitoring.sketches import to_bytes

        names = list(source.schema())
        missing = [c for c in names if c not in fresh]
        computed = dict(fresh)
        computed.update(_sketch_columns(source, missing, workers))
        sketches = [computed[c] for c in names]
        payload = to_bytes(sketches, sketch_options())
        oid = hash_bytes(payload)
        with self.blobs.batch() as batch:
            batch.put_bytes(payload, oid)
        if row is None:
            self.store.add(
                dataset_version_id=version.id,
                dataset_ref=version.ref,
                kind=SKETCH_KIND,
                options_key=_options_key(),
                options=sketch_options(),
                sketch_oid=oid,
                size_bytes=len(payload),
            )
        else:
            self.store.replace(row, dataset_ref=version.ref, sketch_oid=oid, size=len(payload))
        return sketches

    # -- sources -----------------------------------------------------------------------------
    def source(self, spec: Any, scratch: Path) -> TableSource:
        """A comparison side from a dataset ref or version, a file path, a frame, or a
        `TableSource` (e.g. Parquet segments of logged traffic) used as it is."""
        from modelcycle.monitoring.sources import FrameSource, TableSource, open_file
        from modelcycle.store.metadata import VersionRecord

        if isinstance(spec, TableSource):
            return spec
        if isinstance(spec, VersionRecord):
            return self._dataset_source(spec)
        if isinstance(spec, str) and spec.startswith(TRAFFIC_PREFIX):
            return FrameSource(self._traffic(spec))
        if isinstance(spec, str | os.PathLike):
            path = Path(spec).expanduser()
            text = os.fspath(spec)
            if path.is_file():
                return open_file(path, scratch)
            if path.is_dir():
                raise UsageError(
                    f"{path} is a folder", hint="compare a table file or a dataset version"
                )
            if isinstance(spec, os.PathLike) or any(sep in text for sep in ("/", os.sep)):
                raise NotFoundError(f"{path} does not exist", hint="check the path")
            return self._dataset_source(self._table_version(text))
        return FrameSource(spec)

    def _traffic(self, spec: str) -> Any:
        """The logged inputs of ``deployment:NAME[:WINDOW]`` (WINDOW: 1h by default)."""
        from modelcycle.core.durations import parse_duration

        name, _, window = spec[len(TRAFFIC_PREFIX) :].partition(":")
        if not name:
            raise UsageError(f"{spec!r} names no deployment", hint=TRAFFIC_HINT)
        seconds = parse_duration(window or "1h", f"the window of {spec!r}")
        if self.traffic is None:
            raise UsageError("this workspace cannot read prediction logs", hint=TRAFFIC_HINT)
        frame = self.traffic(name, seconds)
        if frame.height == 0:
            raise InputDataError(
                f"deployment {name} logged no prediction in the last {window or '1h'}",
                hint="send it traffic, or widen the window: deployment:NAME:24h",
            )
        return frame

    def _table_version(self, ref: str) -> VersionRecord:
        try:
            version = self.datasets.resolve(ref)
        except NotFoundError as e:
            raise NotFoundError(
                f"no file and no dataset version {ref!r}: {e.message}",
                hint="give a path to a Parquet/CSV file or a dataset ref (NAME@REF)",
            ) from e
        if version.kind != "table":
            raise UsageError(
                f"{version.ref} is a file dataset; drift compares tables",
                hint="compare table versions (added from CSV, Parquet …)",
            )
        return version

    def _dataset_source(self, version: VersionRecord) -> TableSource:
        from modelcycle.data.manifest import TableManifest
        from modelcycle.monitoring.sources import ParquetSource

        def paths() -> list[str]:
            manifest = self.datasets.manifest(version)
            assert isinstance(manifest, TableManifest)
            return self.datasets._local_parts(manifest)

        return ParquetSource(paths, version.ref, version)

    @contextmanager
    def _scratch(self) -> Iterator[Path]:
        base = self.datasets.state_dir / "tmp"
        try:
            base.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix="drift-", dir=base))
        except OSError as e:
            raise StorageError(
                f"cannot create a scratch folder in {base}: {e}",
                hint="check free disk space and permissions",
            ) from e
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def sketch_options() -> dict[str, Any]:
    """What a stored sketch depends on; a change makes a new sketch."""
    from modelcycle.monitoring import sketches as s

    return {
        "format": s.SKETCH_VERSION,
        "epsilon": s.EPSILON,
        "exact_distinct": s.EXACT_DISTINCT,
        "split": s._SPLIT,
    }


def _options_key() -> str:
    text = json.dumps(sketch_options(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _sketch_columns(
    source: TableSource, names: Sequence[str], workers: int | None
) -> dict[str, ColumnSketch]:
    """Stored sketches of ``names`` (kinds inferred), one column at a time per worker."""
    from concurrent.futures import ThreadPoolExecutor

    from modelcycle.monitoring import kinds as k
    from modelcycle.monitoring.sketches import (
        ColumnProblem,
        ColumnSketch,
        infer_column_kind,
        sketch_series,
    )

    def one(name: str) -> ColumnSketch:
        series = source.column(name)
        kind = infer_column_kind(series)
        try:
            return sketch_series(name, series, kind).for_storage()
        except ColumnProblem as e:
            rows = len(series)
            return ColumnSketch(name, k.UNSUPPORTED, str(series.dtype), rows, rows, notes=[str(e)])

    if not names:
        return {}
    count = workers or min(len(names), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(count, 1), thread_name_prefix="sketch") as pool:
        return dict(zip(names, pool.map(one, names), strict=True))
