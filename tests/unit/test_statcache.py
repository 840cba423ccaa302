"""The stat cache: opening it from several processes at once, its folders, damaged rows."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

from modelcycle.core.statcache import StatCache


def _open_and_write(path: str, n: int, barrier: mp.synchronize.Barrier) -> None:
    barrier.wait()
    cache = StatCache(Path(path))
    cache.update("/data", [(f"{n}/f", (1, 2, 3), f"hash{n}")])
    cache.close()


def test_parallel_first_open_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "stat.db"
    ctx = mp.get_context("fork")
    workers = 8
    barrier = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_open_and_write, args=(str(path), n, barrier)) for n in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    cache = StatCache(path)
    entries = cache.load("/data")
    cache.close()
    assert sorted(entries) == sorted(f"{n}/f" for n in range(workers))
    assert entries["3/f"] == ((1, 2, 3), "hash3")


def test_entries_are_found_from_any_folder_above_them(tmp_path: Path) -> None:
    cache = StatCache(tmp_path / "stat.db")
    try:
        cache.update("/data", [("a", (1, 2, 3), "ha"), ("sub/b", (4, 5, 6), "hb")])
        cache.update("/data/sub", [("c", (7, 8, 9), "hc"), ("b", (4, 5, 7), "hb2")])
        cache.update("/datalike", [("x", (1, 1, 1), "hx")])  # a sibling, not a child
        assert cache.load("/data") == {
            "a": ((1, 2, 3), "ha"),
            "sub/b": ((4, 5, 7), "hb2"),
            "sub/c": ((7, 8, 9), "hc"),
        }
        assert cache.load("/data/sub/") == {"b": ((4, 5, 7), "hb2"), "c": ((7, 8, 9), "hc")}
        assert cache.load("/") == {
            "data/a": ((1, 2, 3), "ha"),
            "data/sub/b": ((4, 5, 7), "hb2"),
            "data/sub/c": ((7, 8, 9), "hc"),
            "datalike/x": ((1, 1, 1), "hx"),
        }
    finally:
        cache.close()


def test_a_damaged_row_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    cache = StatCache(path)
    cache.update("/data", [("a", (1, 2, 3), "ha")])
    cache.close()
    conn = sqlite3.connect(path)
    (blob,) = conn.execute("SELECT entries FROM dirs").fetchone()
    conn.execute("UPDATE dirs SET entries = ?", (blob.replace(b"ha", b"hb"),))
    conn.commit()
    conn.close()
    cache = StatCache(path)
    try:
        assert cache.load("/data") == {}
        cache.update("/data", [("b", (1, 2, 4), "hb")])  # a damaged row is replaced
        assert cache.load("/data") == {"b": ((1, 2, 4), "hb")}
    finally:
        cache.close()


def test_the_per_file_layout_of_earlier_releases_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE stat (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
        "inode INTEGER, hash TEXT) WITHOUT ROWID"
    )
    conn.execute("INSERT INTO stat VALUES ('/data/a', 1, 2, 3, 'ha')")
    conn.commit()
    conn.close()
    StatCache(path).close()
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "stat" not in tables


def test_removed_paths_are_forgotten(tmp_path: Path) -> None:
    """A folder whose files keep changing names does not grow its row without end."""
    cache = StatCache(tmp_path / "stat.db")
    try:
        cache.update("/data", [("a.txt", (1, 1, 1), "h1"), ("b.txt", (2, 2, 2), "h2")])
        cache.update("/data", [("c.txt", (3, 3, 3), "h3")])
        assert set(cache.load("/data")) == {"a.txt", "b.txt", "c.txt"}
        cache.update("/data", [("d.txt", (4, 4, 4), "h4")], removed=["a.txt", "c.txt"])
        assert cache.load("/data") == {"b.txt": ((2, 2, 2), "h2"), "d.txt": ((4, 4, 4), "h4")}
    finally:
        cache.close()


def _rows(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        (dirs,) = conn.execute("SELECT count(*) FROM dirs").fetchone()
        (changes,) = conn.execute("SELECT count(*) FROM dir_changes").fetchone()
    finally:
        conn.close()
    return dirs, changes


def test_small_updates_add_change_rows_that_are_folded_in_later(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    cache = StatCache(path)
    try:
        cache.update("/data", [(f"f{i}", (i, i, i), f"h{i}") for i in range(1000)])
        assert _rows(path) == (1, 0)
        expected = {f"f{i}": ((i, i, i), f"h{i}") for i in range(1000)}
        for round_ in range(1, 40):
            changed = f"f{round_}"
            cache.update("/data", [(changed, (-round_, 0, 0), f"new{round_}")], removed=["f999"])
            expected[changed] = ((-round_, 0, 0), f"new{round_}")
            expected.pop("f999", None)
            assert cache.load("/data") == expected
            assert cache.load("/") == {f"data/{k}": v for k, v in expected.items()}
            # Never more than the allowed change rows: the next update folds them in.
            assert _rows(path)[1] <= 16
        assert _rows(path)[1] < 39  # some were folded in
    finally:
        cache.close()


def test_a_damaged_change_row_costs_only_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "stat.db"
    cache = StatCache(path)
    cache.update("/data", [(f"f{i}", (i, i, i), f"h{i}") for i in range(100)])
    cache.update("/data", [("f1", (7, 7, 7), "changed")])
    cache.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM dir_changes").fetchone() == (1,)
    conn.execute("UPDATE dir_changes SET checksum = 'x'")
    conn.commit()
    conn.close()
    cache = StatCache(path)
    try:
        loaded = cache.load("/data")
        # The change is lost: f1's old entry remains, and is used only if its stat matches.
        assert loaded["f1"] == ((1, 1, 1), "h1")
        assert len(loaded) == 100
    finally:
        cache.close()


def test_change_rows_apply_only_to_the_row_they_were_written_over(tmp_path: Path) -> None:
    """A directory row rewritten without them (as earlier releases, which know nothing of
    change rows, do) is not overridden by stale changes."""
    import marshal

    from modelcycle.core.hashing import hash_bytes

    path = tmp_path / "stat.db"
    cache = StatCache(path)
    cache.update("/data", [(f"f{i}", (i, i, i), f"h{i}") for i in range(100)])
    cache.update("/data", [("f1", (1, 1, 2), "h1-v2")])
    assert cache.load("/data")["f1"] == ((1, 1, 2), "h1-v2")
    cache.close()
    rewritten = {f"f{i}": ((i, i, i), f"h{i}") for i in range(100)}
    rewritten["f1"] = ((1, 1, 3), "h1-v3")
    blob = marshal.dumps(rewritten)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE dirs SET checksum = ?, entries = ?", (hash_bytes(blob), blob))
    conn.commit()
    conn.close()
    cache = StatCache(path)
    try:
        assert cache.load("/data")["f1"] == ((1, 1, 3), "h1-v3")
        cache.update("/data", [("f2", (2, 2, 9), "h2-v2")])
        loaded = cache.load("/data")
        assert (loaded["f1"], loaded["f2"]) == (((1, 1, 3), "h1-v3"), ((2, 2, 9), "h2-v2"))
    finally:
        cache.close()
