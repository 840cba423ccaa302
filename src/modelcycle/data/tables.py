"""Tables: reading source files into Parquet, and reading versions back.

polars does the work. CSV and JSON Lines are streamed (scan → sink) so a file larger
than memory can be added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.core.hashing import hash_bytes, hash_file
from modelcycle.core.progress import Progress
from modelcycle.data.formats import FORMATS
from modelcycle.data.manifest import Part, TableManifest

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "statistics": True,
}


# Sources up to this size are read into memory in one multi-threaded pass, and the
# profile is computed from that copy; larger ones stream from disk to disk (then the
# profile reads the Parquet back), so memory stays bounded whatever the file's size.
IN_MEMORY_BYTES = 1 << 30


def write_parquet(
    src: Path, fmt: str, dest: Path
) -> tuple[list[tuple[str, str]], int, pl.DataFrame | None]:
    """Convert ``src`` to one Parquet file at ``dest``.

    Returns (schema, row count, the table if it was read into memory, else None).
    """
    size = src.stat().st_size
    if size == 0:
        raise InputDataError(
            f"{src} is empty", hint="add a file with a header row and at least one data row"
        )
    frame = None
    try:
        if size <= IN_MEMORY_BYTES and fmt in ("csv", "tsv", "parquet", "jsonl"):
            frame = _read_in_memory(src, fmt)
            frame.write_parquet(dest, **PARQUET_OPTIONS)
        else:
            _convert(src, fmt, dest, infer_rows=10_000)
    except pl.exceptions.ComputeError as e:
        if "could not parse" not in str(e) and "infer_schema_length" not in str(e):
            raise _read_error(src, fmt, e) from e
        # A value far down the file does not fit the type guessed from the first rows:
        # read again, this time inferring types from every row.
        try:
            _convert(src, fmt, dest, infer_rows=None)
            frame = None
        except pl.exceptions.PolarsError as e2:
            raise _read_error(src, fmt, e2) from e2
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        raise _read_error(src, fmt, e) from e
    meta = pl.read_parquet_schema(dest)
    schema = [(name, str(dtype)) for name, dtype in meta.items()]
    if not schema:
        raise InputDataError(f"{src} has no columns", hint="check the file's header row")
    if frame is not None:
        return schema, frame.height, frame
    rows = pl.scan_parquet(dest).select(pl.len()).collect().item()
    return schema, int(rows), None


@dataclass
class StagedTable:
    """A table file converted to one Parquet part (`stage_table`), not stored yet."""

    part_path: Path
    part: Part
    manifest: TableManifest
    manifest_bytes: bytes
    manifest_oid: str  # the version's content hash
    frame: pl.DataFrame | None  # the table, when it was read into memory

    def profile(self) -> dict[str, Any]:
        """The column profile, from the copy in memory if there is one (then dropped)."""
        from modelcycle.data.profile import profile_frame

        frame, self.frame = self.frame, None
        return profile_frame(
            frame.lazy() if frame is not None else scan_parts([str(self.part_path)])
        )


def stage_table(src: Path, fmt: str, dest: Path, progress: Progress) -> StagedTable:
    """Convert the table file ``src`` to the Parquet part ``dest`` and make its manifest.

    The dataset service and the CLI's quick path both add tables through this, so that
    equal files give equal parts and content hashes whichever path added them.
    """
    progress.task(f"reading {src.name} ({fmt})")
    schema, rows, frame = write_parquet(src, fmt, dest)
    progress.task("hashing")
    size = dest.stat().st_size
    part = Part(hash_file(dest, size), rows, size)
    manifest = TableManifest(tuple(schema), (part,))
    manifest_bytes = manifest.to_bytes()
    return StagedTable(dest, part, manifest, manifest_bytes, hash_bytes(manifest_bytes), frame)


def _read_in_memory(src: Path, fmt: str) -> pl.DataFrame:
    if fmt in ("csv", "tsv"):
        return pl.read_csv(
            src,
            separator="," if fmt == "csv" else "\t",
            infer_schema_length=10_000,
            encoding="utf8",
            try_parse_dates=False,
        )
    if fmt == "jsonl":
        return pl.read_ndjson(src, infer_schema_length=10_000)
    return pl.read_parquet(src)


def _convert(src: Path, fmt: str, dest: Path, infer_rows: int | None) -> None:
    if fmt in ("csv", "tsv"):
        lf = pl.scan_csv(
            src,
            separator="," if fmt == "csv" else "\t",
            infer_schema_length=infer_rows,
            encoding="utf8",
            try_parse_dates=False,
        )
        lf.sink_parquet(dest, **PARQUET_OPTIONS, maintain_order=True)
    elif fmt == "jsonl":
        pl.scan_ndjson(src, infer_schema_length=infer_rows).sink_parquet(
            dest, **PARQUET_OPTIONS, maintain_order=True
        )
    elif fmt == "parquet":
        pl.scan_parquet(src).sink_parquet(dest, **PARQUET_OPTIONS, maintain_order=True)
    elif fmt == "json":
        pl.read_json(src, infer_schema_length=infer_rows).write_parquet(dest, **PARQUET_OPTIONS)
    elif fmt == "excel":
        try:
            df = pl.read_excel(src)
        except ModuleNotFoundError as e:
            raise UsageError(
                "reading Excel files needs fastexcel", hint="pip install fastexcel"
            ) from e
        df.write_parquet(dest, **PARQUET_OPTIONS)
    else:
        raise UsageError(f"{fmt!r} is not a table format", hint=f"use one of {FORMATS}")


def _read_error(src: Path, fmt: str, e: Exception) -> InputDataError:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    hint = f"fix the file, or pass --format if it is not {fmt}"
    if "invalid utf-8" in text.lower() or ("utf8" in text.lower() and "invalid" in text.lower()):
        hint = (
            "the file is not UTF-8: convert it (e.g. `iconv -f latin1 -t utf-8`) and add it again"
        )
    elif re.search(r"more fields|fields than|ragged|found \d+ fields", text, re.I):
        line = _first_ragged_line(src, "," if fmt == "csv" else "\t")
        where = f"line {line[0]} has {line[1]} fields, the header {line[2]}" if line else ""
        hint = (f"{where}; " if where else "") + "every row must have as many fields as the header"
        first = f"{first} ({where})" if where else first
    elif "empty" in text.lower():
        hint = "add a file with a header row and at least one data row"
    elif isinstance(e, FileNotFoundError):
        hint = "check the path"
    detail = " ".join(line.strip() for line in text.splitlines()[:6] if line.strip())
    return InputDataError(
        f"cannot read {src} as {fmt}: {first}", hint=hint, file=str(src), detail=detail
    )


def _first_ragged_line(src: Path, sep: str) -> tuple[int, int, int] | None:
    """(line number, fields, header fields) of the first row whose width differs."""
    import csv

    try:
        with open(src, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f, delimiter=sep)
            header = next(reader, None)
            if header is None:
                return None
            for row in reader:
                if row and len(row) != len(header):
                    return reader.line_num, len(row), len(header)
    except (OSError, csv.Error):
        return None
    return None


def scan_parts(paths: list[str]) -> pl.LazyFrame:
    """A lazy frame over the Parquet part files of a version."""
    return pl.scan_parquet(paths)


def write_frame(df: pl.DataFrame, dest: Path) -> tuple[list[tuple[str, str]], int]:
    df.write_parquet(dest, **PARQUET_OPTIONS)
    return [(n, str(t)) for n, t in df.schema.items()], df.height
