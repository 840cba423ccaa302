"""Which format a path is read as (kept free of heavy imports: the CLI's quick paths use it)."""

from __future__ import annotations

from pathlib import Path

from modelcycle import __version__
from modelcycle.core.errors import UsageError

TABLE_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".xlsx": "excel",
}
FORMATS = (*sorted(set(TABLE_SUFFIXES.values())), "files")


def detect_format(path: Path, explicit: str | None) -> str:
    """The format to read ``path`` as: one of FORMATS."""
    if explicit:
        if explicit not in FORMATS:
            raise UsageError(
                f"unknown format {explicit!r}", hint=f"use one of: {', '.join(FORMATS)}"
            )
        return explicit
    if path.is_dir():
        return "files"
    return TABLE_SUFFIXES.get(path.suffix.lower(), "files")


def add_step(src: Path, fmt: str, source: str | None = None) -> dict[str, str]:
    """The ``step`` of a version made by adding ``src`` as ``fmt``: what made it.
    ``source`` replaces the path when ``src`` is a scratch copy."""
    return {
        "op": "add",
        "source": source or str(src.resolve()),
        "format": fmt,
        "library": f"modelcycle {__version__}",
    }


__all__ = ["FORMATS", "TABLE_SUFFIXES", "add_step", "detect_format"]
