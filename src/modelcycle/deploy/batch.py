"""Batch scoring: a model version's predictions for a whole file or table version, as Parquet.

``score`` streams the input in chunks (CSV, TSV, JSON Lines, Parquet, or a table version
``NAME@REF``), checks each chunk against the model's signature, predicts the chunks in
parallel and writes them, in input order, to a Parquet file: the columns to keep (an id),
``prediction``, and ``proba_<class>`` for classifiers. At most a few chunks are in memory at
once. The output is written to a temporary name beside it and renamed into place at the end,
so a failure leaves no partial file.

Where chunks are predicted:

- ``local`` with threads sharing one loaded model, for flavors whose predict runs in native
  code that releases the GIL (scikit-learn, XGBoost, LightGBM, ONNX, PyTorch, Keras); BLAS
  is limited to the threads' share of the CPUs meanwhile;
- ``local`` with a process pool whose workers each load the model once, for
  ``python_function`` models (their predict is Python, which holds the GIL);
- ``ray`` / ``ray://HOST:PORT`` with one actor per worker, each loading the model once from
  the package's bytes (verified against their hashes), so no shared disk is needed.
"""

from __future__ import annotations

import csv
import importlib
import io
import itertools
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelcycle.core.errors import (
    ConflictError,
    InputDataError,
    ModelcycleError,
    NotFoundError,
    UsageError,
)
from modelcycle.core.progress import NullProgress, Progress
from modelcycle.data.formats import TABLE_SUFFIXES
from modelcycle.executors import RayExecutor, open_executor
from modelcycle.flavors.package import LoadedModel, load_package
from modelcycle.flavors.signature import Signature, compatible

if TYPE_CHECKING:
    from modelcycle.data.service import DatasetService
    from modelcycle.registry import RegistryService

T = TypeVar("T")
#: chunks hold about this many bytes of input columns (8 a value), up to MAX_CHUNK_ROWS rows
CHUNK_BYTES = 16 << 20
MAX_CHUNK_ROWS = 100_000
POOLS = ("auto", "threads", "processes")
OUTPUT_SUFFIXES = (".parquet", ".pq")
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
#: flavors whose predict holds the GIL: threads would take turns, so ``auto`` uses processes
GIL_BOUND_FLAVORS = frozenset({"python_function"})
_STREAMED = {"csv": ",", "tsv": "\t", "jsonl": "", "parquet": ""}
_COMPRESSED = (".gz", ".bz2", ".zst")
_CSV_BLOCK_BYTES = 8 << 20
_READ_BUFFER = 1 << 20
# Dictionary-encode only the predictions (few distinct labels): trying it on every float
# column costs more than predicting. Snappy, Parquet's usual codec: zstd (even at level 1)
# took about 1.5x its CPU time to write 1M predictions and class probabilities, which do not
# compress; writing uncompressed saves a little more time but makes files up to twice as big.
_PARQUET_OUTPUT = {"compression": "snappy", "use_dictionary": [PREDICTION]}


@dataclass(frozen=True)
class BatchResult:
    """What ``score`` did."""

    model: str  # the version scored, e.g. "churn@7"
    source: str  # the input file, or the table version it resolved to
    output: Path
    rows: int
    seconds: float
    columns: tuple[str, ...]
    executor: str  # e.g. "local (2 threads)"
    workers: int
    chunks: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "output": str(self.output),
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "rows_per_second": round(self.rows_per_second, 1),
            "columns": list(self.columns),
            "executor": self.executor,
            "workers": self.workers,
            "chunks": self.chunks,
        }


def score(
    registry: RegistryService,
    model_ref: str,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    datasets: DatasetService | None = None,
    executor: str | None = None,
    workers: int | None = None,
    pool: str = "auto",
    chunk_rows: int | None = None,
    include_columns: Sequence[str] = (),
    proba: bool = True,
    trusted: Sequence[str] = (),
    overwrite: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Score ``source`` with the model version ``model_ref`` into the Parquet file ``output``.

    ``source`` is a CSV/TSV/JSON Lines/Parquet file (optionally .gz/.bz2/.zst compressed) or a
    table version ``NAME@REF`` (read through ``datasets``, by default the registry's).
    ``executor`` is ``local``, ``ray`` or ``ray://HOST:PORT`` (default: MODELCYCLE_EXECUTOR,
    else local); ``workers`` defaults to the CPUs of this machine or of the Ray cluster.
    ``pool`` picks threads or processes for the local executor (``auto``: threads unless the
    model's predict is Python code). ``chunk_rows`` defaults to about `CHUNK_BYTES` of input
    columns (at most `MAX_CHUNK_ROWS`). ``include_columns`` are copied from the input (an id);
    ``proba`` adds ``proba_<class>`` columns for classifiers. A model saved without a
    signature takes every input column but the kept ones, in file order. ``trusted`` names
    code the package may import (see `modelcycle.flavors.trust`). An existing ``output`` is
    replaced only with ``overwrite``. The output's Parquet metadata names the model version
    and the source (``modelcycle.model``, ``modelcycle.model_manifest``, ``modelcycle.source``).
    """
    started = time.perf_counter()
    out = _check_output(Path(output).expanduser(), overwrite)
    if chunk_rows is not None and chunk_rows < 1:
        raise UsageError(f"chunk_rows must be at least 1, not {chunk_rows}", hint="e.g. 100000")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}", hint="e.g. 2")
    if pool not in POOLS:
        raise UsageError(f"unknown pool {pool!r}", hint=f"use one of: {', '.join(POOLS)}")
    keep = list(dict.fromkeys(include_columns))
    for name in keep:
        if name == PREDICTION or name.startswith(PROBA_PREFIX):
            raise UsageError(
                f"cannot keep a column named {name!r}: the output has its own",
                hint=f"rename it in the input; output columns are {PREDICTION!r} "
                f"and {PROBA_PREFIX}<class>",
            )

    version = registry.resolve(model_ref)
    if version.stage == "retired":
        raise ConflictError(
            f"{version.ref} is retired; its package may be gone",
            hint="score with a live version (`modelcycle model versions NAME`)",
        )
    reader = _open_source(source, datasets or registry.runs.datasets)
    loaded = registry.load(version.ref, trusted=tuple(trusted))
    plan = _plan(loaded, reader.columns, keep, proba, reader.name)
    reader.check_columns(plan.needed, plan.keep)
    if chunk_rows is None:  # wide inputs get fewer rows a chunk: memory stays about the same
        chunk_rows = max(1024, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (8 * len(plan.needed))))

    runner = _open_runner(loaded, plan, executor, workers, pool, trusted)
    bar = progress or NullProgress()
    bar.task(f"scoring {reader.name} with {version.ref}", total=reader.rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with runner, closing(_read_ahead(_checked(reader, plan, chunk_rows), 2)) as inputs:
            # where the predictions came from travels with them (Parquet key-value metadata)
            lineage = {
                "modelcycle.model": version.ref,
                "modelcycle.model_manifest": version.manifest_oid,
                "modelcycle.source": reader.name,
            }
            results = _ordered(runner, inputs)
            rows, chunks, columns = _write(results, tmp, lineage, bar, reader.name)
        _publish(tmp, out, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return BatchResult(
        model=version.ref,
        source=reader.name,
        output=out,
        rows=rows,
        seconds=time.perf_counter() - started,
        columns=columns,
        executor=runner.describe(),
        workers=runner.workers,
        chunks=chunks,
    )


# -- what to predict --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """What each worker does with a chunk (plain data: it travels to processes and actors)."""

    inputs: tuple[str, ...]  # the model's columns, in the order it takes them
    keep: tuple[str, ...]
    categories: tuple[str, ...]  # signature columns of dtype category
    proba: bool
    proba_names: tuple[str, ...]  # empty: named by position once the width is known
    signature: Signature | None = field(default=None, compare=False)

    @property
    def needed(self) -> list[str]:
        return list(dict.fromkeys([*self.inputs, *self.keep]))


def _plan(
    loaded: LoadedModel, columns: Sequence[str] | None, keep: list[str], proba: bool, name: str
) -> _Plan:
    sig = loaded.signature
    if sig is not None and sig.kind == "columns":
        inputs = tuple(str(s.name) for s in sig.inputs)
        categories = tuple(str(s.name) for s in sig.inputs if s.dtype == "category")
    elif columns is not None:
        # a model without named inputs takes every column but those kept, in file order
        inputs, categories = tuple(c for c in columns if c not in keep), ()
    else:
        raise UsageError(
            f"the model has no named inputs, and the columns of {name} are not known "
            "before reading it",
            hint="convert the input to Parquet or CSV, or save the model with a signature",
        )
    with_proba = proba and loaded.has_predict_proba
    classes = getattr(_native(loaded), "classes_", None) if with_proba else None
    names: tuple[str, ...] = ()
    if classes is not None:
        names = tuple(f"{PROBA_PREFIX}{c}" for c in np.asarray(classes).tolist())
        if len(set(names)) != len(names):
            names = ()
    return _Plan(inputs, tuple(keep), categories, with_proba, names, sig)


def _native(loaded: LoadedModel) -> Any:
    try:
        return loaded.native
    except (AttributeError, NotImplementedError):
        return None


class _Scorer:
    """A loaded model and a plan: turns an input chunk into its output columns."""

    def __init__(self, model: LoadedModel, plan: _Plan) -> None:
        self.model = model
        self.plan = plan

    def __call__(self, chunk: pa.Table, first_row: int) -> pa.Table:
        plan = self.plan
        frame = _frame(chunk.select(list(plan.inputs)))
        for name in plan.categories:
            if str(frame[name].dtype) != "category":
                frame[name] = frame[name].astype("category")
        try:
            predictions = np.asarray(self.model.predict(frame))
            probabilities = np.asarray(self.model.predict_proba(frame)) if plan.proba else None
        except ModelcycleError:
            raise
        except Exception as e:
            rows = f"{first_row + 1}-{first_row + chunk.num_rows}"
            said = (str(e).strip().splitlines() or [""])[0]  # not a page of advice
            raise InputDataError(
                f"the model failed on rows {rows}: {type(e).__name__}: {said}",
                hint="check those rows (missing or out-of-range values?) or clean the data first",
            ) from e
        columns = {name: chunk.column(name) for name in plan.keep}
        columns[PREDICTION] = _column(predictions, chunk.num_rows, "predictions")
        if probabilities is not None:
            if probabilities.ndim != 2 or len(probabilities) != chunk.num_rows:
                raise InputDataError(
                    f"predict_proba returned shape {probabilities.shape} for {chunk.num_rows} rows",
                    hint="the model must return one row of class probabilities per input row",
                )
            names = plan.proba_names
            if len(names) != probabilities.shape[1]:
                names = tuple(f"{PROBA_PREFIX}{j}" for j in range(probabilities.shape[1]))
            for j, name in enumerate(names):
                columns[name] = pa.array(np.ascontiguousarray(probabilities[:, j]))
        return pa.table(columns)


def _frame(table: pa.Table) -> Any:
    """``table`` as a pandas DataFrame, the same frame ``table.to_pandas()`` makes.

    All-float64 inputs (the common case) are copied once, column by column, into one
    column-major matrix that the frame wraps without copying: a model that turns the frame
    into an array (scikit-learn does) gets that matrix as it is.
    """
    if not all(pa.types.is_float64(t) for t in table.schema.types):
        return table.to_pandas()
    import pandas as pd

    matrix = np.empty((table.num_rows, table.num_columns), order="F")
    for j, column in enumerate(table.columns):
        row = 0
        for part in column.chunks:  # nulls become NaN, as in to_pandas
            matrix[row : row + len(part), j] = part.to_numpy(zero_copy_only=False)
            row += len(part)
    return pd.DataFrame(matrix, columns=table.column_names, copy=False)


def _column(values: np.ndarray[Any, Any], rows: int, what: str) -> pa.Array:
    if len(values) != rows:
        raise InputDataError(
            f"the model returned {len(values)} {what} for {rows} rows",
            hint="the model must return one prediction per input row",
        )
    if values.ndim == 1:
        return pa.array(values)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))


# -- sources ----------------------------------------------------------------------------------
class _Reader:
    """A streamed input: its name, columns and rows when known before reading, its chunks."""

    name: str
    columns: list[str] | None = None
    rows: int | None = None

    keep: Sequence[str] = ()

    def batches(
        self, columns: list[str], types: dict[str, pa.DataType], rows: int
    ) -> Iterator[Any]:
        """Record batches or tables holding ``columns``, in order, of about ``rows`` rows."""
        raise NotImplementedError

    def check_columns(self, needed: list[str], keep: Sequence[str]) -> None:
        """Raise `InputDataError` naming the columns the input lacks (now, if it can tell)."""
        self.keep = keep
        if self.columns is not None:
            _check_present(self.columns, needed, keep, self.name)


def _check_present(
    present: Sequence[str], needed: list[str], keep: Sequence[str], name: str
) -> None:
    have = set(present)
    problems = [
        f"no column {c!r} to keep" if c in keep else f"missing column {c!r}"
        for c in needed
        if c not in have
    ]
    if problems:
        raise InputDataError(
            f"{name} lacks columns: " + "; ".join(problems),
            hint=f"its columns: {', '.join(present) or 'none'}",
            problems=problems,
        )


def _open_source(source: str | os.PathLike[str], datasets: DatasetService) -> _Reader:
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        raise UsageError(
            f"{path} is a folder",
            hint="score one file, or add the folder as a dataset and score NAME@REF",
        )
    if path.is_file():
        return _file_reader(path)
    suffixes = [s.lower() for s in path.suffixes]
    if "@" in text or not (os.sep in text or set(suffixes) & {*TABLE_SUFFIXES, *_COMPRESSED}):
        return _DatasetReader(text, datasets)
    raise NotFoundError(f"no file {path}", hint="check the path (or pass a dataset as NAME@REF)")


def _file_reader(path: Path) -> _Reader:
    suffixes = [s.lower() for s in path.suffixes] or [""]
    compressed = suffixes[-1] in _COMPRESSED and len(suffixes) > 1
    fmt = TABLE_SUFFIXES.get(suffixes[-2] if compressed else suffixes[-1])
    if fmt not in _STREAMED or (compressed and fmt == "parquet"):
        raise UsageError(
            f"cannot stream {path.name}: batch scoring reads .csv, .tsv, .jsonl/.ndjson "
            "(optionally .gz/.bz2/.zst) and .parquet files",
            hint="add the file as a dataset (`modelcycle dataset add NAME FILE`) and score NAME@REF",
        )
    if fmt == "parquet":
        return _ParquetReader([path], str(path))
    if fmt == "jsonl":
        return _JsonLinesReader(path)
    return _CsvReader(path, _STREAMED[fmt])


class _ParquetReader(_Reader):
    def __init__(self, paths: list[Path], name: str) -> None:
        self.paths = paths
        self.name = name
        try:
            first = pq.ParquetFile(paths[0]) if paths else None
            self.rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputDataError(f"{name} is not a readable Parquet file: {e}", hint="") from e
        self.columns = list(first.schema_arrow.names) if first is not None else []

    def batches(
        self, columns: list[str], types: dict[str, pa.DataType], rows: int
    ) -> Iterator[Any]:
        for path in self.paths:
            try:
                # no pre-buffering (it reads every row group ahead: memory grows with the
                # file) and buffered column chunks (read a page at a time, not whole)
                parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=_READ_BUFFER)
                yield from parquet.iter_batches(batch_size=rows, columns=columns)
            except (pa.ArrowInvalid, OSError) as e:
                raise InputDataError(f"cannot read {self.name}: {e}", hint="") from e


class _DatasetReader(_ParquetReader):
    def __init__(self, ref: str, datasets: DatasetService) -> None:
        from modelcycle.data.manifest import TableManifest

        version = datasets.resolve(ref)
        manifest = datasets.manifest(version)
        if not isinstance(manifest, TableManifest):
            raise UsageError(
                f"{version.ref} is a file dataset, not a table",
                hint="score a table version (one added from CSV, Parquet or JSON Lines)",
            )
        # verified against their hashes (fetched first from a remote blob store)
        paths = [Path(p) for p in datasets._local_parts(manifest)]
        super().__init__(paths, version.ref)
        self.columns = [name for name, _ in manifest.schema]


class _CsvReader(_Reader):
    def __init__(self, path: Path, delimiter: str) -> None:
        self.path = path
        self.name = str(path)
        self.delimiter = delimiter
        try:
            with pa.input_stream(str(path), compression="detect") as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                self.columns = next(csv.reader(text, delimiter=delimiter), [])
        except (UnicodeDecodeError, csv.Error, OSError, pa.ArrowInvalid) as e:
            raise InputDataError(f"cannot read the header of {path}: {e}", hint="") from e
        if not self.columns:
            raise InputDataError(f"{path} is empty", hint="a CSV file starts with a header row")

    def batches(
        self, columns: list[str], types: dict[str, pa.DataType], rows: int
    ) -> Iterator[Any]:
        from pyarrow import csv as pacsv

        convert = pacsv.ConvertOptions(
            include_columns=columns, column_types={c: types[c] for c in columns if c in types}
        )
        try:
            stream = pacsv.open_csv(
                pa.input_stream(str(self.path), compression="detect"),
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
                convert_options=convert,
            )
            yield from stream
        except pa.ArrowInvalid as e:
            raise self._error(e) from e

    def _error(self, e: Exception) -> InputDataError:
        where, text = str(self.path), str(e)
        index, _, rest = text.removeprefix("In CSV column #").partition(": ")
        names = self.columns or []
        if text.startswith("In CSV column #") and index.isdigit() and int(index) < len(names):
            where, text = f"column {names[int(index)]!r} of {self.path}", rest
        return InputDataError(
            f"cannot read {where}: {text}",
            hint="fix those values, or clean the file with a recipe and score the dataset version",
        )


class _JsonLinesReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    def batches(
        self, columns: list[str], types: dict[str, pa.DataType], rows: int
    ) -> Iterator[Any]:
        from pyarrow import json as pajson

        options = pajson.ParseOptions()
        with pa.input_stream(str(self.path), compression="detect") as raw:
            lines = (line for line in io.BufferedReader(raw) if line.strip())
            start = 0
            while block := list(itertools.islice(lines, rows)):
                where = f"lines {start + 1}-{start + len(block)} of {self.path}"
                try:
                    table = pajson.read_json(io.BytesIO(b"".join(block)), parse_options=options)
                    if start == 0:
                        _check_present(table.column_names, columns, self.keep, self.name)
                        table = table.select(columns)
                        table = table.cast(
                            pa.schema([(f.name, types.get(f.name, f.type)) for f in table.schema])
                        )
                        # later blocks are read with these types: never guessed again
                        options = pajson.ParseOptions(
                            explicit_schema=table.schema, unexpected_field_behavior="ignore"
                        )
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise InputDataError(
                        f"cannot read {where}: {e}",
                        hint="each line must be one JSON object, with the same types on every line",
                    ) from e
                start += len(block)
                yield table


def _forced_types(plan: _Plan) -> dict[str, pa.DataType]:
    """Arrow types for the model's columns in text formats, so every block agrees."""
    if plan.signature is None or plan.signature.kind != "columns":
        return {}
    out: dict[str, pa.DataType] = {}
    for spec in plan.signature.inputs:
        if spec.dtype.startswith("float"):
            out[str(spec.name)] = pa.float64()
        elif spec.dtype.startswith(("int", "uint")):
            out[str(spec.name)] = pa.int64()
        elif spec.dtype == "bool":
            out[str(spec.name)] = pa.bool_()
        elif spec.dtype in ("string", "category"):
            out[str(spec.name)] = pa.string()
    return out


def _rechunk(batches: Iterable[Any], rows: int, name: str) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last may be shorter), without copying data."""
    held: list[Any] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        held.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = _concat(held, name)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            held, count = ([rest] if rest.num_rows else []), rest.num_rows
    if count:
        yield _concat(held, name)


def _concat(parts: list[Any], name: str) -> pa.Table:
    tables = [p if isinstance(p, pa.Table) else pa.Table.from_batches([p]) for p in parts]
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputDataError(
            f"the column types of {name} change part-way: {e}",
            hint="give every part of the input the same column types",
        ) from e


def _checked(reader: _Reader, plan: _Plan, chunk_rows: int) -> Iterator[tuple[pa.Table, int]]:
    """Chunks with the row number of their first row, each checked against the signature."""
    checked: dict[pa.Schema, None] = {}
    first_row = 0
    batches = reader.batches(plan.needed, _forced_types(plan), chunk_rows)
    for chunk in _rechunk(batches, chunk_rows, reader.name):
        if chunk.schema not in checked:
            _check_types(plan, chunk.schema, reader.name)
            checked[chunk.schema] = None
        yield chunk, first_row
        first_row += chunk.num_rows


def _read_ahead(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """``items``, read by a thread up to ``depth`` ahead: reading overlaps writing."""
    done: Any = object()
    with ThreadPoolExecutor(1, thread_name_prefix="modelcycle-read") as reader:
        ahead = deque(reader.submit(next, items, done) for _ in range(depth))
        while (item := ahead.popleft().result()) is not done:
            ahead.append(reader.submit(next, items, done))
            yield item


def _check_types(plan: _Plan, schema: pa.Schema, name: str) -> None:
    sig = plan.signature
    if sig is None:
        return
    if sig.kind == "columns":
        # straight from the Arrow types: no frame (and no polars import) needed
        problems: list[str] = []
        for spec in sig.inputs:
            index = schema.get_field_index(str(spec.name))
            if index < 0:
                problems.append(f"missing column {spec.name!r}")
                continue
            actual = _signature_dtype(schema.field(index).type)
            if not compatible(spec.dtype, actual):
                problems.append(f"column {spec.name!r} should be {spec.dtype} but is {actual}")
    else:
        import polars as pl

        # a tensor signature reads the dtype of the frame as one array: an empty frame will do
        problems = sig.problems(pl.from_arrow(schema.empty_table()))
    if problems:
        raise InputDataError(
            f"{name} does not match the model's signature: " + "; ".join(problems),
            hint="the model takes " + ", ".join(s.describe() for s in sig.inputs),
            problems=problems,
        )


def _signature_dtype(arrow: pa.DataType) -> str:
    """The signature dtype of an Arrow column, as for the same column in a polars frame."""
    if pa.types.is_dictionary(arrow):
        value = _signature_dtype(arrow.value_type)
        return "category" if value == "string" else value
    if pa.types.is_boolean(arrow):
        return "bool"
    if pa.types.is_integer(arrow):
        return str(arrow)  # int8 … uint64
    if pa.types.is_floating(arrow):
        return f"float{arrow.bit_width}"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or str(arrow) == "string_view":
        return "string"
    if (
        pa.types.is_binary(arrow)
        or pa.types.is_large_binary(arrow)
        or pa.types.is_fixed_size_binary(arrow)
    ):
        return "bytes"
    if pa.types.is_timestamp(arrow) or pa.types.is_date64(arrow):
        return "datetime"
    if pa.types.is_date32(arrow):
        return "date"
    if pa.types.is_duration(arrow):
        return "duration"
    return "object"


# -- where chunks are predicted ---------------------------------------------------------------
class _Runner(Protocol):
    workers: int

    def submit(self, chunk: pa.Table, first_row: int) -> Any: ...

    def result(self, handle: Any) -> pa.Table: ...

    def describe(self) -> str: ...

    def __enter__(self) -> _Runner: ...

    def __exit__(self, *exc: object) -> None: ...


def _ordered(runner: _Runner, chunks: Iterator[tuple[pa.Table, int]]) -> Iterator[pa.Table]:
    """Results in input order, with at most two chunks per worker in flight."""
    pending: deque[Any] = deque()
    for chunk, first_row in chunks:
        pending.append(runner.submit(chunk, first_row))
        if len(pending) >= 2 * runner.workers:
            yield runner.result(pending.popleft())
    while pending:
        yield runner.result(pending.popleft())


def _open_runner(
    loaded: LoadedModel,
    plan: _Plan,
    executor: str | None,
    workers: int | None,
    pool: str,
    trusted: Sequence[str],
) -> _Runner:
    chosen = open_executor(executor, workers)
    if isinstance(chosen, RayExecutor):
        return _RayRunner(chosen.ray, chosen.describe(), loaded, plan, workers, trusted)
    count = workers or os.cpu_count() or 1
    if pool == "processes" or (pool == "auto" and loaded.info.flavor in GIL_BOUND_FLAVORS):
        processes = ProcessPoolExecutor(
            count,
            # spawn, not fork: the parent holds threads and open databases
            mp_context=get_context("spawn"),
            initializer=_load_in_process,
            initargs=(str(loaded.info.path), plan, tuple(trusted)),
        )
        return _PoolRunner(processes, count, _score_in_process, ("process", "processes"))
    threads = ThreadPoolExecutor(count, thread_name_prefix="modelcycle-score")
    cpus = os.cpu_count() or 1
    return _PoolRunner(
        threads, count, _Scorer(loaded, plan), ("thread", "threads"), max(1, cpus // count)
    )


class _PoolRunner:
    """Local workers: threads sharing one loaded model, or processes that each load it once."""

    def __init__(
        self,
        pool: Executor,
        workers: int,
        fn: Callable[[pa.Table, int], pa.Table],
        unit: tuple[str, str],
        blas_threads: int | None = None,
    ) -> None:
        self.pool = pool
        self.workers = workers
        self.fn = fn
        self.unit = unit
        self.blas_threads = blas_threads
        self.limits: Any = None

    def submit(self, chunk: pa.Table, first_row: int) -> Future[pa.Table]:
        return self.pool.submit(self.fn, chunk, first_row)

    def result(self, handle: Future[pa.Table]) -> pa.Table:
        try:
            return handle.result()
        except BrokenProcessPool as e:
            raise ModelcycleError(
                f"a scoring worker process died: {e}",
                hint="its error is printed above; a python_function model's module must be "
                "importable in a new process (not defined in __main__)",
            ) from e

    def describe(self) -> str:
        return f"local ({self.workers} {self.unit[self.workers > 1]})"

    def __enter__(self) -> _PoolRunner:
        if self.blas_threads is not None:
            self.limits = _limit_blas(self.blas_threads)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            if self.limits is not None:
                self.limits.restore_original_limits()


def _limit_blas(threads: int) -> Any:
    """Limit the BLAS libraries loaded in this process to ``threads`` threads, until restored.

    Threads that score chunks side by side each call BLAS (numpy's matrix products), and
    BLAS would start as many threads again for every call: on 2 CPUs, 2 workers x 2 OpenBLAS
    threads took about 1.5x the CPU time (OpenBLAS threads spin while they wait), and the
    benchmark's predictions and probabilities came out bit-identical either way. A library
    already set to fewer threads keeps its setting. The limit holds for the whole process
    while scoring runs. None when nothing is lowered, or when threadpoolctl (a scikit-learn
    dependency) is not installed.
    """
    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        return None
    lower = {
        lib["prefix"]: threads
        for lib in threadpoolctl.threadpool_info()
        if lib["user_api"] == "blas" and lib["num_threads"] > threads
    }
    return threadpoolctl.threadpool_limits(limits=lower) if lower else None


# One loaded model per worker process, set by the pool's initializer.
_PROCESS_SCORER: _Scorer | None = None


def _load_in_process(folder: str, plan: _Plan, trusted: tuple[str, ...]) -> None:
    global _PROCESS_SCORER  # noqa: PLW0603 - the per-process model, loaded once
    _PROCESS_SCORER = _Scorer(load_package(folder, trusted=trusted), plan)


def _score_in_process(chunk: pa.Table, first_row: int) -> pa.Table:
    assert _PROCESS_SCORER is not None, "the pool initializer loads the model"
    return _PROCESS_SCORER(chunk, first_row)


class _RayScorer:
    """A Ray actor's model: loaded once, from the package's bytes, checked against its hashes."""

    def __init__(self, files: dict[str, bytes], plan: _Plan, trusted: tuple[str, ...]) -> None:
        folder = Path(tempfile.mkdtemp(prefix="modelcycle-score-"))
        try:
            for rel, data in files.items():
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            # every flavor reads its files while loading: the folder can go right after
            self.scorer = _Scorer(load_package(folder, trusted=trusted), plan)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def score(self, chunk: pa.Table, first_row: int) -> pa.Table:
        return self.scorer(chunk, first_row)


class _RayRunner:
    def __init__(
        self,
        ray: Any,
        where: str,
        loaded: LoadedModel,
        plan: _Plan,
        workers: int | None,
        trusted: Sequence[str],
    ) -> None:
        self.ray = ray
        self.where = where
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # one CPU per actor: more actors than CPUs would wait for ever to be placed
        self.workers = min(workers or cpus, cpus)
        root = loaded.info.path
        files = {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }
        package = ray.put(files)
        actor = ray.remote(num_cpus=1)(_RayScorer)
        self.actors = [actor.remote(package, plan, tuple(trusted)) for _ in range(self.workers)]
        self.sent = itertools.count()

    def submit(self, chunk: pa.Table, first_row: int) -> Any:
        actor = self.actors[next(self.sent) % self.workers]
        return actor.score.remote(chunk, first_row)

    def result(self, handle: Any) -> pa.Table:
        exceptions = self.ray.exceptions
        try:
            table: pa.Table = self.ray.get(handle)
        except exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, ModelcycleError):
                raise cause from None
            raise ModelcycleError(f"a Ray scoring task failed: {cause or e}", hint="") from e
        except exceptions.RayActorError as e:
            raise ModelcycleError(
                f"a Ray scoring worker died: {e}",
                hint="check that the cluster's workers have modelcycle and the model's "
                "framework installed, and enough memory for a chunk (--chunk-rows)",
            ) from e
        return table

    def describe(self) -> str:
        return f"{self.where}, {self.workers} actor{'s' if self.workers > 1 else ''}"

    def __enter__(self) -> _RayRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


# -- output -----------------------------------------------------------------------------------
def _check_output(out: Path, overwrite: bool) -> Path:
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(
            f"the output {out.name} is not a parquet file",
            hint="batch scoring writes Parquet: name the output e.g. predictions.parquet",
        )
    if out.is_dir():
        raise ConflictError(f"the output {out} is a folder", hint="name a file")
    if out.exists() and not overwrite:
        raise ConflictError(
            f"the output {out} exists", hint="choose another name, or pass --overwrite"
        )
    return out


def _write(
    results: Iterator[pa.Table], tmp: Path, lineage: dict[str, str], bar: Progress, name: str
) -> tuple[int, int, tuple[str, ...]]:
    """Write ``results`` to ``tmp``; the rows, chunks and columns written."""
    first = next(results, None)
    if first is None:
        raise InputDataError(f"{name} has no rows", hint="there is nothing to score")
    rows = chunks = 0
    schema = first.schema.with_metadata(lineage)
    with pq.ParquetWriter(tmp, schema, **_PARQUET_OUTPUT) as writer:
        for table in itertools.chain([first], results):
            try:
                writer.write_table(
                    table if table.schema.equals(first.schema) else table.cast(first.schema)
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise InputDataError(
                    f"the output for {name} changed type between chunks: {e}",
                    hint="give the kept columns one type throughout the input",
                ) from e
            rows += table.num_rows
            chunks += 1
            bar.advance(table.num_rows)
    return rows, chunks, tuple(first.schema.names)


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    if out.exists() and not overwrite:
        raise ConflictError(f"the output {out} appeared while scoring", hint="choose another name")
    os.replace(tmp, out)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["CHUNK_BYTES", "MAX_CHUNK_ROWS", "POOLS", "BatchResult", "score"]
