"""A per-machine cache of file hashes keyed by (path, size, mtime, inode).

Re-adding a folder hashes only the files whose stat changed. The cache lives in the
workspace's local state folder (never in a shared PostgreSQL store: the paths are this
machine's). A lost, stale or damaged cache only costs time: an entry is used only when
all four keys match, and a row whose checksum does not match is ignored.

Entries are kept one row per directory: the row of ``/data/images`` holds every file
directly in it as one marshal-encoded dict, name -> ((size, mtime_ns, inode), hash).
``dataset status`` and re-adds read the cache of a whole folder on every run, and
decoding one such row is done in C, several times faster than turning one SQLite row per
file into Python tuples.

An update writes only what changed: a small change row per directory (name -> entry,
or None for a file that is gone) that loading applies over the directory's row. Re-adding
a folder of 20,000 files after changing 100 then writes 100 entries, not 20,000. Once a
directory's change rows grow past a quarter of its row, or number more than
`_MAX_CHANGE_ROWS`, the next update folds them into the row.
"""

from __future__ import annotations

import marshal
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelcycle.core.hashing import hash_bytes

StatKey = tuple[int, int, int]  # size, mtime_ns, inode
Entry = tuple[StatKey, str]  # stat key, hash
# Bumped whenever the encoding of a row changes; rows of another format are ignored.
_FORMAT = 1
_MAX_CHANGE_ROWS = 16


def stat_cache_path(state_dir: Path) -> Path:
    """Where a workspace keeps its stat cache."""
    return state_dir / "cache" / "stat.db"


class StatCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._use_wal()
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dirs (path TEXT PRIMARY KEY, format INTEGER, "
            "checksum TEXT, entries BLOB)"
        )
        self._create_change_table()
        self._drop_per_file_table()

    def _use_wal(self) -> None:
        """Switch the file to WAL once; another process may be doing the same.

        Changing the journal mode needs the file to itself and SQLite reports a
        clash at once instead of waiting, so retry for a while. WAL is a property
        of the file, so only the first process to get through has work to do; if
        none can, the default journal still works, only slower under contention.
        """
        deadline = time.monotonic() + 10
        while True:
            try:
                (mode,) = self._db.execute("PRAGMA journal_mode").fetchone()
                if mode == "wal":
                    return
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)

    def _create_change_table(self) -> None:
        """Change rows name the checksum of the directory row they apply to (``base``): a
        row rewritten since (by the fold of another process, or by an earlier release
        that knows nothing of change rows) leaves them unused."""
        columns = [r[1] for r in self._db.execute("PRAGMA table_info(dir_changes)")]
        if columns and "base" not in columns:
            self._db.execute("DROP TABLE IF EXISTS dir_changes")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dir_changes (path TEXT, seq INTEGER, base TEXT, "
            "format INTEGER, checksum TEXT, entries BLOB, PRIMARY KEY (path, seq))"
        )

    def _drop_per_file_table(self) -> None:
        """Free the space of the earlier layout (one row per file), which nothing reads."""
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stat'"
        ).fetchone()
        if found is not None:
            self._db.execute("DROP TABLE IF EXISTS stat")

    def load(self, folder: str) -> dict[str, Entry]:
        """Every entry under ``folder`` (an absolute path), keyed by the path relative
        to it: ``{"a.txt": ((size, mtime_ns, inode), hash), "sub/b.txt": ...}``."""
        folder = folder.rstrip("/") or "/"
        prefix = folder if folder == "/" else folder + "/"
        where = "WHERE path = ? OR (path >= ? AND path < ?)"
        bounds = (folder, prefix, prefix[:-1] + "0")  # "0" sorts right after "/"
        self._db.execute("BEGIN")  # one snapshot for both reads
        try:
            rows = self._db.execute(
                f"SELECT path, format, checksum, entries FROM dirs {where}", bounds
            ).fetchall()
            changes = self._db.execute(
                f"SELECT path, base, format, checksum, entries FROM dir_changes {where} "
                "ORDER BY path, seq",
                bounds,
            ).fetchall()
        finally:
            self._db.execute("COMMIT")
        out: dict[str, Entry] = {}
        bases: dict[str, object] = {}
        for path, fmt, checksum, blob in rows:
            bases[path] = checksum
            entries = _decode(fmt, checksum, blob)
            if path == folder:
                if not out:
                    out = entries  # the common case: one folder, taken as decoded
                else:
                    out.update(entries)
            elif path.startswith(prefix):
                sub = path[len(prefix) :] + "/"
                out.update({sub + name: entry for name, entry in entries.items()})
        for path, base, fmt, checksum, blob in changes:
            if path not in bases or base != bases[path]:
                continue  # not written over this row of the directory (or another one's)
            sub = "" if path == folder else path[len(prefix) :] + "/"
            _apply(out, _decode(fmt, checksum, blob), sub)
        return out

    def update(
        self,
        folder: str,
        entries: Iterable[tuple[str, StatKey, str]],
        removed: Iterable[str] = (),
    ) -> None:
        """Record (path relative to ``folder``, stat key, hash) entries, replacing those
        of the same paths, and forget the ``removed`` paths (files that are gone, so that
        a folder whose files keep changing names does not grow its row without end)."""
        folder = folder.rstrip("/") or "/"
        by_dir: dict[str, dict[str, Entry | None]] = {}
        for rel in removed:
            sub, _, name = rel.rpartition("/")
            by_dir.setdefault(_join(folder, sub), {})[name] = None
        for rel, key, oid in entries:
            sub, _, name = rel.rpartition("/")
            by_dir.setdefault(_join(folder, sub), {})[name] = (key, oid)
        if not by_dir:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for directory, new in by_dir.items():
                self._record(directory, new)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _record(self, directory: str, new: dict[str, Entry | None]) -> None:
        """Add a change row for ``directory``, or fold its changes into its row."""
        base = self._db.execute(
            "SELECT checksum, length(entries) FROM dirs WHERE path = ?", (directory,)
        ).fetchone()
        n_changes, changes_size, last_seq = self._db.execute(
            "SELECT count(*), coalesce(sum(length(entries)), 0), coalesce(max(seq), 0) "
            "FROM dir_changes WHERE path = ?",
            (directory,),
        ).fetchone()
        blob = marshal.dumps(new)
        if (
            base is not None
            and n_changes < _MAX_CHANGE_ROWS
            and changes_size + len(blob) <= base[1] // 4
        ):
            self._db.execute(
                "INSERT INTO dir_changes VALUES (?, ?, ?, ?, ?, ?)",
                (directory, last_seq + 1, base[0], _FORMAT, hash_bytes(blob), blob),
            )
            return
        merged = self._load_dir(directory) if base is not None else {}
        _apply(merged, new)
        blob = marshal.dumps(merged)
        self._db.execute(
            "INSERT OR REPLACE INTO dirs VALUES (?, ?, ?, ?)",
            (directory, _FORMAT, hash_bytes(blob), blob),
        )
        self._db.execute("DELETE FROM dir_changes WHERE path = ?", (directory,))

    def _load_dir(self, directory: str) -> dict[str, Entry]:
        """The entries of ``directory`` alone (its row and its change rows)."""
        row = self._db.execute(
            "SELECT format, checksum, entries FROM dirs WHERE path = ?", (directory,)
        ).fetchone()
        if row is None:
            return {}
        out = _decode(*row)
        for fmt, checksum, blob in self._db.execute(
            "SELECT format, checksum, entries FROM dir_changes WHERE path = ? AND base = ? "
            "ORDER BY seq",
            (directory, row[1]),
        ):
            _apply(out, _decode(fmt, checksum, blob))
        return out

    def close(self) -> None:
        self._db.close()


def _apply(out: dict[str, Entry], changes: dict[str, Entry | None], sub: str = "") -> None:
    """Apply a change row's ``changes`` (an entry, or None: forget it) to ``out``, under
    the subfolder ``sub`` ("" or ending in "/")."""
    for name, entry in changes.items():
        if entry is None:
            out.pop(sub + name, None)
        else:
            out[sub + name] = entry


def _join(folder: str, sub: str) -> str:
    if not sub:
        return folder
    return "/" + sub if folder == "/" else f"{folder}/{sub}"


def _decode(fmt: object, checksum: object, blob: object) -> dict[str, Any]:
    """The entries of one row (of a change row: an entry or None); none when the row is
    of another format or damaged (the cache is only a shortcut: a file whose entry is
    lost is hashed again, and an entry is used only while its stat key matches)."""
    if fmt != _FORMAT or not isinstance(blob, bytes) or hash_bytes(blob) != checksum:
        return {}
    try:
        entries = marshal.loads(blob)
    except (ValueError, EOFError, TypeError):
        return {}
    return entries if isinstance(entries, dict) else {}
