"""What a version is made of, stored as one JSON blob whose hash is the version's hash.

A manifest holds content only (no times, no names), so equal content gives an equal
manifest and therefore the same content hash.

- files: ``{"kind": "files", "files": [[path, oid, size, mode], ...]}`` sorted by path
- table: ``{"kind": "table", "format": "parquet", "schema": [...], "parts": [[oid, rows, size]]}``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any, NamedTuple

from modelcycle.core.errors import IntegrityError


class FileEntry(NamedTuple):
    """One file of a manifest. A named tuple: manifests hold tens of thousands of these,
    and a tuple costs less than half as much to make as a frozen dataclass instance."""

    path: str
    oid: str
    size: int
    mode: int


@dataclass(frozen=True)
class FileManifest:
    files: tuple[FileEntry, ...]

    kind = "files"

    @cached_property
    def size(self) -> int:
        return sum([f.size for f in self.files])

    def oids(self) -> set[str]:
        return {f.oid for f in self.files}

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    def to_bytes(self) -> bytes:
        return _encode_file_rows(sorted(self.files, key=_BY_PATH))


_BY_PATH = itemgetter(0)


def _json_file_rows(rows: list[FileEntry]) -> bytes:
    # Each entry is a tuple (path, oid, size, mode), which json writes as the array
    # [path, oid, size, mode]: no list per entry is needed.
    return json.dumps({"kind": "files", "files": rows}, separators=(",", ":")).encode()


try:
    # The same bytes, four times as fast (built at install where a C compiler is).
    from modelcycle.core._native import encode_file_rows as _c_encode_file_rows
    from modelcycle.core._native import file_manifest_oids as _c_file_manifest_oids

    def _encode_file_rows(rows: list[FileEntry]) -> bytes:
        return _c_encode_file_rows(rows, encode_basestring_ascii)

except ImportError:
    _encode_file_rows = _json_file_rows

    def _c_file_manifest_oids(data: bytes, /) -> set[str] | None:
        return None  # json reads every manifest


@dataclass(frozen=True, slots=True)
class Part:
    oid: str
    rows: int
    size: int


@dataclass(frozen=True)
class TableManifest:
    schema: tuple[tuple[str, str], ...]  # (column, dtype)
    parts: tuple[Part, ...]

    kind = "table"

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    def oids(self) -> set[str]:
        return {p.oid for p in self.parts}

    def schema_list(self) -> list[dict[str, str]]:
        return [{"name": n, "type": t} for n, t in self.schema]

    def to_bytes(self) -> bytes:
        doc = {
            "kind": "table",
            "format": "parquet",
            "schema": [list(c) for c in self.schema],
            "parts": [[p.oid, p.rows, p.size] for p in self.parts],
        }
        return json.dumps(doc, separators=(",", ":")).encode()


Manifest = FileManifest | TableManifest


def file_index(data: bytes, where: str) -> dict[str, str]:
    """path -> oid of the file manifest ``data``: all that comparing a folder with it
    needs, without making an entry per file."""
    try:
        return {p: o for p, o, _size, _mode in _file_rows(data, where)}
    except (ValueError, TypeError) as e:
        raise _unreadable(where, e) from e


def file_oids(data: bytes, where: str) -> set[str]:
    """The blobs the file manifest ``data`` references: all that skipping its (stored)
    blobs on a re-add needs, without the path index `file_index` would build."""
    if (oids := _c_file_manifest_oids(data)) is not None:
        return oids  # read in C where laid out as this module writes it: a third of the time
    try:
        return {o for _path, o, _size, _mode in _file_rows(data, where)}
    except (ValueError, TypeError) as e:
        raise _unreadable(where, e) from e


def _file_rows(data: bytes, where: str) -> list[Any]:
    try:
        doc: dict[str, Any] = json.loads(data)
        kind = doc["kind"]
        if kind == "files":
            rows: list[Any] = doc["files"]
            return rows
    except (ValueError, KeyError, TypeError) as e:
        raise _unreadable(where, e) from e
    raise IntegrityError(
        f"the manifest of {where} is a {kind!r} manifest, not a file manifest",
        hint="run `modelcycle fsck`",
    )


def _unreadable(where: str, e: Exception) -> IntegrityError:
    return IntegrityError(
        f"the manifest of {where} is unreadable: {e}", hint="run `modelcycle fsck`"
    )


def load_manifest(data: bytes, where: str) -> Manifest:
    try:
        doc: dict[str, Any] = json.loads(data)
        if doc["kind"] == "files":
            return FileManifest(
                tuple([FileEntry(p, o, int(s), int(m)) for p, o, s, m in doc["files"]])
            )
        if doc["kind"] == "table":
            return TableManifest(
                schema=tuple((str(n), str(t)) for n, t in doc["schema"]),
                parts=tuple(Part(o, int(r), int(s)) for o, r, s in doc["parts"]),
            )
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(
            f"the manifest of {where} is unreadable: {e}", hint="run `modelcycle fsck`"
        ) from e
    raise IntegrityError(
        f"the manifest of {where} has an unknown kind {doc.get('kind')!r}",
        hint="run `modelcycle fsck`",
    )
