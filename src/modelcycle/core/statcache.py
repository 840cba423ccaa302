"""A per-machine cache of file hashes keyed by (path, size, mtime, inode).

Re-adding a folder hashes only the files whose stat changed. The cache lives in the
workspace's local state folder (never in a shared PostgreSQL store: the paths are this
machine's). A lost or stale cache only costs time: an entry is used only when all four
keys match.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

StatKey = tuple[int, int, int]  # size, mtime_ns, inode


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
            "CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, inode INTEGER, hash TEXT) WITHOUT ROWID"
        )

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

    def load(self, folder: str) -> dict[str, tuple[StatKey, str]]:
        """Every entry under ``folder`` (an absolute path): path -> (stat key, hash)."""
        prefix = folder.rstrip("/") + "/"
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, inode, hash FROM stat WHERE path >= ? AND path < ?",
            (prefix, prefix[:-1] + "0"),  # "0" sorts right after "/"
        )
        return {p: ((s, m, i), h) for p, s, m, i, h in rows}

    def update(self, entries: Iterable[tuple[str, StatKey, str]]) -> None:
        rows = [(p, k[0], k[1], k[2], h) for p, k, h in entries]
        if not rows:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?)", rows)
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
