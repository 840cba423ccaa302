"""Where a side of a comparison comes from: a dataset version, a file, or a data frame.

Every source reads one column at a time (Parquet is columnar: reading one column of a
large file reads only its pages), so memory holds a few columns, never the whole table.
CSV, TSV and JSON Lines files are first streamed to a temporary Parquet file.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from modelcycle.core.errors import InputDataError, UsageError

if TYPE_CHECKING:
    from modelcycle.store.metadata import VersionRecord


class TableSource(ABC):
    """One side of a comparison: a label for people, a schema, and its columns."""

    label: str
    version: VersionRecord | None = None

    @abstractmethod
    def schema(self) -> dict[str, pl.DataType]: ...

    @abstractmethod
    def num_rows(self) -> int: ...

    @abstractmethod
    def column(self, name: str) -> pl.Series: ...

    @abstractmethod
    def batches(self, columns: Sequence[str], size: int) -> Iterator[pl.DataFrame]:
        """The rows of ``columns``, ``size`` at a time."""


class ParquetSource(TableSource):
    """Parquet files (the parts of a dataset version, or a file), opened on first use."""

    def __init__(
        self,
        paths: list[str] | Callable[[], list[str]],
        label: str,
        version: VersionRecord | None = None,
    ) -> None:
        self._paths = paths
        self._lock = threading.Lock()  # columns are read from several threads
        self.label = label
        self.version = version
        self._schema: dict[str, pl.DataType] | None = None
        self._rows: int | None = None

    @property
    def paths(self) -> list[str]:
        with self._lock:
            if callable(self._paths):
                self._paths = self._paths()
            return self._paths

    def _scan(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.paths)

    def schema(self) -> dict[str, pl.DataType]:
        if self._schema is None:
            if not self.paths:
                self._schema = {}
            else:
                self._schema = dict(pl.read_parquet_schema(self.paths[0]))
        return self._schema

    def num_rows(self) -> int:
        if self._rows is None:
            self._rows = int(self._scan().select(pl.len()).collect().item()) if self.paths else 0
        return self._rows

    def column(self, name: str) -> pl.Series:
        if not self.paths:
            return pl.Series(name, [], dtype=self.schema().get(name, pl.Null))
        return self._scan().select(pl.col(name)).collect().to_series()

    def batches(self, columns: Sequence[str], size: int) -> Iterator[pl.DataFrame]:
        import pyarrow.parquet as pq

        for path in self.paths:
            with pq.ParquetFile(path) as f:
                for batch in f.iter_batches(batch_size=size, columns=list(columns)):
                    frame = pl.from_arrow(batch)
                    assert isinstance(frame, pl.DataFrame)
                    yield frame


class FrameSource(TableSource):
    """A polars (or pandas, converted) data frame already in memory."""

    def __init__(self, frame: Any, label: str = "data frame") -> None:
        self.frame = to_polars(frame)
        self.label = label

    def schema(self) -> dict[str, pl.DataType]:
        return dict(self.frame.schema)

    def num_rows(self) -> int:
        return self.frame.height

    def column(self, name: str) -> pl.Series:
        return self.frame.get_column(name)

    def batches(self, columns: Sequence[str], size: int) -> Iterator[pl.DataFrame]:
        yield from self.frame.select(columns).iter_slices(size)


def to_polars(frame: Any) -> pl.DataFrame:
    """A polars DataFrame from a polars or pandas one. pandas object columns that mix
    types (numbers and strings, say) become strings rather than failing."""
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise UsageError(
            f"cannot compare a {type(frame).__name__}",
            hint="pass a dataset ref, a file path, or a pandas/polars DataFrame",
        )
    columns = {}
    for name in frame.columns:
        series = frame[name]
        try:
            columns[str(name)] = pl.from_pandas(series)
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            text = [None if pd.isna(v) else str(v) for v in series.tolist()]
            columns[str(name)] = pl.Series(str(name), text, dtype=pl.String)
    return pl.DataFrame(columns)


def open_file(path: Path, scratch: Path) -> TableSource:
    """A file as a source: Parquet as it is; CSV, TSV, JSON Lines streamed to Parquet in
    ``scratch`` first; other table formats read (in memory) and written there."""
    from modelcycle.data.formats import detect_format

    fmt = detect_format(path, None)
    if fmt == "parquet":
        try:
            pl.read_parquet_schema(path)
        except (pl.exceptions.PolarsError, OSError) as e:
            raise InputDataError(
                f"cannot read {path} as Parquet: {str(e).splitlines()[0]}",
                hint="check the file, or give a CSV or a dataset ref",
            ) from e
        return ParquetSource([str(path)], str(path))
    if fmt == "files":
        raise UsageError(
            f"{path} is not a table file",
            hint="compare Parquet, CSV, TSV or JSON Lines files, or dataset versions",
        )
    dest = scratch / f"{path.stem}.parquet"
    _convert(path, fmt, dest)
    return ParquetSource([str(dest)], str(path))


def _convert(path: Path, fmt: str, dest: Path) -> None:
    if fmt in ("csv", "tsv", "jsonl"):
        for infer in (10_000, None):
            try:
                if fmt == "jsonl":
                    lf = pl.scan_ndjson(path, infer_schema_length=infer)
                else:
                    lf = pl.scan_csv(
                        path,
                        separator="," if fmt == "csv" else "\t",
                        infer_schema_length=infer,
                        try_parse_dates=False,
                    )
                lf.sink_parquet(dest)
                return
            except pl.exceptions.ComputeError as e:
                # a value far down the file does not fit the type guessed from the top
                if infer is None or "could not parse" not in str(e):
                    raise _read_error(path, fmt, e) from e
            except (pl.exceptions.PolarsError, OSError) as e:
                raise _read_error(path, fmt, e) from e
        return
    from modelcycle.data.tables import write_parquet

    write_parquet(path, fmt, dest)


def _read_error(path: Path, fmt: str, e: Exception) -> InputDataError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return InputDataError(
        f"cannot read {path} as {fmt}: {first}",
        hint="fix the file, or add it as a dataset first (`modelcycle dataset add`)",
    )
