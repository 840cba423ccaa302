"""Folders of files: scanning, ingesting into a blob store, and comparing manifests."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcycle.blobs import PutResult
from modelcycle.blobs import local as local_blobs
from modelcycle.blobs.local import LocalBlobStore
from modelcycle.core.errors import InputDataError, IntegrityError, NotFoundError
from modelcycle.core.hashing import hash_bytes
from modelcycle.core.statcache import StatCache
from modelcycle.data import files as files_module
from modelcycle.data import manifest as manifest_module
from modelcycle.data.files import (
    FileChanges,
    _racy,
    compare,
    current_manifest,
    folder_changes,
    ingest,
    scan,
)
from modelcycle.data.manifest import (
    FileEntry,
    FileManifest,
    file_index,
    file_oids,
    load_manifest,
)


def manifest(**files: str) -> FileManifest:
    """A manifest from path=content pairs (``__`` in a keyword stands for ``/``)."""
    return FileManifest(
        tuple(
            FileEntry(path.replace("__", "/"), hash_bytes(content.encode()), len(content), 0o644)
            for path, content in files.items()
        )
    )


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


OLD = 1_000_000_000  # a modification time well past the racy window


# ---------------------------------------------------------------- compare


def test_compare_equal_manifests_is_clean() -> None:
    old = manifest(a="1", b="2")
    changes = compare(old, manifest(a="1", b="2"))
    assert changes.clean
    assert changes == FileChanges([], [], [], [])


def test_compare_finds_added_removed_and_modified() -> None:
    changes = compare(manifest(a="1", b="2", c="3"), manifest(a="1", b="two", d="4"))
    assert changes.added == ["d"]
    assert changes.removed == ["c"]
    assert changes.modified == ["b"]
    assert changes.renamed == []
    assert not changes.clean


def test_compare_finds_a_rename() -> None:
    changes = compare(manifest(docs__old="same"), manifest(docs__new="same"))
    assert changes.renamed == [("docs/old", "docs/new")]
    assert changes.added == changes.removed == changes.modified == []
    assert not changes.clean


def test_compare_renames_only_as_many_as_were_removed() -> None:
    old = manifest(a="x", b="x", keep="k")
    new = manifest(c="x", keep="k")
    changes = compare(old, new)
    assert changes.renamed == [("a", "c")]
    assert changes.removed == ["b"]
    assert changes.added == []


def test_compare_a_copy_is_an_addition() -> None:
    changes = compare(manifest(a="x"), manifest(a="x", b="x"))
    assert changes.added == ["b"]
    assert changes.renamed == []


def test_compare_lists_are_sorted() -> None:
    changes = compare(manifest(), manifest(z="1", a="2", m="3"))
    assert changes.added == ["a", "m", "z"]


def test_changes_to_dict() -> None:
    changes = compare(manifest(a="1", b="2", c="3"), manifest(a="one", b__moved="2", d="4"))
    assert changes.to_dict() == {
        "added": ["d"],
        "removed": ["c"],
        "modified": ["a"],
        "renamed": [{"from": "b", "to": "b/moved"}],
    }


# ---------------------------------------------------------------- scan


@pytest.fixture(params=["c", "python"])
def helpers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C helpers (modelcycle.core._native), then with the Python
    code a package built without a C compiler uses."""
    if request.param == "python":
        monkeypatch.setattr(files_module, "_list_folder", files_module._scandir)
        monkeypatch.setattr(files_module, "_match", files_module._match_cached)
        monkeypatch.setattr(manifest_module, "_encode_file_rows", manifest_module._json_file_rows)
    return str(request.param)


def test_the_c_helpers_are_built() -> None:
    """The install compiled modelcycle.core._native (hatch_build.py; a C compiler is
    there), so the tests here compare it with the fallback, not the fallback with itself."""
    assert files_module._list_folder is not files_module._scandir
    assert files_module._match is not files_module._match_cached
    assert manifest_module._encode_file_rows is not manifest_module._json_file_rows
    assert local_blobs._syncfs is not local_blobs._ctypes_syncfs


def test_the_c_listing_sees_what_os_scandir_sees(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.txt": b"a", "run.sh": b"#!", ".hidden": b"h", "sub/b.txt": b"b"})
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / ".git").mkdir()
    os.symlink("a.txt", tmp_path / "link_to_file")
    os.symlink("sub", tmp_path / "link_to_folder")
    os.symlink("nowhere", tmp_path / "broken_link")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"not UTF-8")
    for n in range(600):  # enough for the C listing to stat on two threads
        (tmp_path / "sub" / f"{n}.txt").write_bytes(b"x" * n)
    SF = files_module.ScannedFile
    for folder, rel in ((tmp_path, ""), (tmp_path / "sub", "sub/")):
        prefix = f"{folder}/"
        c_files, c_folders = files_module._list_folder(prefix, rel, SF)
        py_files, py_folders = files_module._scandir(prefix, rel, SF)
        assert all(type(f) is SF for f in c_files)
        assert sorted(c_files) == sorted(py_files)
        assert sorted(c_folders) == sorted(py_folders)
        # Sorted by the names' bytes: a run the sort of the whole tree finds.
        assert [os.fsencode(f.rel) for f in c_files] == sorted(os.fsencode(f.rel) for f in c_files)
    c_files, c_folders = files_module._list_folder(f"{tmp_path}/", "", SF)
    by_rel = {f.rel: f for f in c_files}
    assert sorted(by_rel) == sorted(
        [".hidden", "a.txt", "link_to_file", "run.sh", os.fsdecode(b"caf\xe9.txt")]
    )
    assert by_rel["run.sh"].mode == 0o755 and by_rel["a.txt"].mode == 0o644
    assert by_rel["link_to_file"].key == by_rel["a.txt"].key  # the link followed
    assert by_rel["a.txt"].abspath == f"{tmp_path}/a.txt"
    assert sorted(c_folders) == [".git", "sub"]


def test_the_c_listing_raises_as_os_scandir_does(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    for path, error in (
        (tmp_path / "nope", FileNotFoundError),
        (tmp_path / "f", NotADirectoryError),
    ):
        for list_folder in (files_module._list_folder, files_module._scandir):
            with pytest.raises(error) as raised:
                list_folder(f"{path}/", "", files_module.ScannedFile)
            assert raised.value.filename == f"{path}/"


_PATHS = st.text(st.sampled_from("ab/é"), min_size=1, max_size=4)
_KEYS = st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(
    scanned=st.dictionaries(_PATHS, st.tuples(_KEYS, st.sampled_from([0o644, 0o755])), max_size=8),
    cached=st.dictionaries(_PATHS, st.tuples(_KEYS, st.sampled_from(["o1", "o2", "o3"]))),
    known=st.sets(st.sampled_from(["o1", "o2", "o3"])),
    elsewhere=st.sampled_from(["", "/data/sub/", "/other/"]),
)
def test_the_c_cache_match_agrees_with_python(
    scanned: dict[str, tuple[tuple[int, int, int], int]],
    cached: dict[str, tuple[tuple[int, int, int], str]],
    known: set[str],
    elsewhere: str,
) -> None:
    """Files scanned from the cache's folder (keyed by their own relative path), and
    maybe one from elsewhere: under the folder (keyed by a path cut from its absolute
    path) or outside it (no verdict)."""
    files = [
        files_module.ScannedFile(rel, f"/data/{rel}", key, mode)
        for rel, (key, mode) in sorted(scanned.items())
    ]
    if elsewhere and files:
        files[-1] = files[-1]._replace(abspath=elsewhere + files[-1].rel)
    args = (files, cached, "/data/", known, FileEntry)
    c_result = files_module._match(*args)
    assert c_result == files_module._match_cached(*args)
    if c_result is not None:
        assert [type(e) for e in c_result[0] if e is not None] == [FileEntry] * (
            len(files) - len(c_result[1])
        )


def test_the_c_listing_raises_on_a_link_it_cannot_follow(tmp_path: Path) -> None:
    """A link to nothing is no file; a link that cannot be followed (a loop, a folder
    without permission) is an error, as DirEntry.is_file() raises it."""
    (tmp_path / "a.txt").write_bytes(b"a")
    os.symlink("nowhere", tmp_path / "dangling")
    files, _ = files_module._list_folder(f"{tmp_path}/", "", files_module.ScannedFile)
    assert [f.rel for f in files] == ["a.txt"]
    os.symlink("loop", tmp_path / "loop")
    for list_folder in (files_module._list_folder, files_module._scandir):
        with pytest.raises(OSError) as raised:
            list_folder(f"{tmp_path}/", "", files_module.ScannedFile)
        assert raised.value.errno == errno.ELOOP


def test_the_c_listing_keeps_mtimes_past_2262(tmp_path: Path) -> None:
    far = tmp_path / "far.txt"
    far.write_bytes(b"x")
    year_2300_ns = 10_413_792_000 * 10**9 + 123  # past what 64 bits of nanoseconds hold
    os.utime(far, ns=(year_2300_ns, year_2300_ns))
    [c_file], _ = files_module._list_folder(f"{tmp_path}/", "", files_module.ScannedFile)
    [py_file], _ = files_module._scandir(f"{tmp_path}/", "", files_module.ScannedFile)
    assert c_file.key == py_file.key
    assert c_file.key[1] == far.stat().st_mtime_ns > 2**63


def test_syncfs_with_and_without_the_c_helpers(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        local_blobs._syncfs(fd)
        local_blobs._ctypes_syncfs(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        local_blobs._syncfs(fd)  # closed now


def test_scan_lists_files_sorted_and_skips_tool_folders(tmp_path: Path, helpers: str) -> None:
    write_tree(
        tmp_path,
        {
            "b.txt": b"b",
            "a/z.bin": b"z",
            "a/b/c.csv": b"c",
            ".hidden": b"h",
            ".git/HEAD": b"ref",
            ".modelcycle/metadata.db": b"db",
            ".dvc/config": b"x",
            "sub/__pycache__/m.pyc": b"x",
            "sub/.git/objects/x": b"x",
        },
    )
    (tmp_path / "empty_dir").mkdir()
    found = scan(tmp_path)
    assert [f.rel for f in found] == [".hidden", "a/b/c.csv", "a/z.bin", "b.txt"]
    by_rel = {f.rel: f for f in found}
    assert by_rel["a/b/c.csv"].abspath == str((tmp_path / "a/b/c.csv").resolve())
    assert by_rel["b.txt"].key[0] == 1


def test_scan_records_size_mtime_inode_and_mode(tmp_path: Path, helpers: str) -> None:
    write_tree(tmp_path, {"run.sh": b"#!/bin/sh\n", "data.txt": b"12345"})
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "data.txt").chmod(0o600)
    by_rel = {f.rel: f for f in scan(tmp_path)}
    st = (tmp_path / "data.txt").stat()
    assert by_rel["data.txt"].key == (5, st.st_mtime_ns, st.st_ino)
    assert by_rel["data.txt"].mode == 0o644  # only the executable bit is kept
    assert by_rel["run.sh"].mode == 0o755


def test_scan_a_single_file(tmp_path: Path, helpers: str) -> None:
    write_tree(tmp_path, {"one.csv": b"a,b\n"})
    [found] = scan(tmp_path / "one.csv")
    assert found.rel == "one.csv"
    assert found.key[0] == 4


def test_scan_a_missing_path(tmp_path: Path, helpers: str) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        scan(tmp_path / "nope")


def test_scan_does_not_follow_folder_symlinks(tmp_path: Path, helpers: str) -> None:
    write_tree(tmp_path, {"real/f.txt": b"f", "outside/g.txt": b"g"})
    root = tmp_path / "real"
    os.symlink(tmp_path / "outside", root / "link")
    assert [f.rel for f in scan(root)] == ["f.txt"]


# ---------------------------------------------------------------- ingest


def test_ingest_stores_every_file_and_builds_the_manifest(tmp_path: Path, helpers: str) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha", "b/c.txt": b"gamma", "b/dup.txt": b"alpha"})
    store = LocalBlobStore(tmp_path / "blobs")
    with store.batch() as batch:
        result = ingest(scan(src), batch, cache=None, known_oids=set(), workers=2)
    entries = {e.path: e for e in result.manifest.files}
    assert sorted(entries) == ["a.txt", "b/c.txt", "b/dup.txt"]
    assert entries["a.txt"].oid == entries["b/dup.txt"].oid == hash_bytes(b"alpha")
    assert entries["b/c.txt"].oid == hash_bytes(b"gamma")
    assert result.files_added == 2
    assert result.bytes_added == 10
    assert result.bytes_deduplicated == 5
    assert result.files_hashed == 3
    assert store.read_bytes(hash_bytes(b"gamma")) == b"gamma"
    assert set(store.iter_oids()) == result.manifest.oids()


def test_ingest_pipeline_matches_the_serial_path(tmp_path: Path) -> None:
    """Hundreds of files go through the pipeline (the calling thread reads, a pool
    writes): small, duplicate, known and bigger-than-inline files, with the same
    manifest, counts and stored blobs as one thread gives."""
    tree = {f"d{n % 7}/f{n}.bin": f"file {n % 300}".encode() * 50 for n in range(400)}
    tree["big/one.bin"] = bytes(range(256)) * (5 << 12)  # 5 MiB: hashed in the pool
    tree["big/two.bin"] = b"z" * (20 << 20)  # above the in-memory limit
    src = tmp_path / "src"
    write_tree(src, tree)
    known = {hash_bytes(tree["d0/f0.bin"])}
    results = {}
    for workers in (1, 3):
        store = LocalBlobStore(tmp_path / f"blobs{workers}")
        with store.batch() as batch:
            results[workers] = ingest(scan(src), batch, None, known_oids=known, workers=workers)
        assert set(store.iter_oids()) == results[workers].manifest.oids() - known
        assert store.read_bytes(hash_bytes(tree["big/two.bin"])) == tree["big/two.bin"]
    serial, pooled = results[1], results[3]
    assert pooled.manifest == serial.manifest
    assert {e.path: e.oid for e in pooled.manifest.files} == {
        path: hash_bytes(data) for path, data in tree.items()
    }
    assert (pooled.files_added, pooled.bytes_added) == (serial.files_added, serial.bytes_added)
    assert pooled.files_added == 301  # 299 new small contents and the two big files
    assert pooled.files_hashed == len(tree)


def test_ingest_stores_what_a_file_holds_when_read(tmp_path: Path) -> None:
    """A file that grew or shrank between the scan and the read is stored as read, with
    that size in the manifest."""
    src = tmp_path / "src"
    write_tree(src, {"grows.log": b"first line\n", "shrinks.txt": b"long content here"})
    files = scan(src)
    (src / "grows.log").write_bytes(b"first line\n" + b"more\n" * 50_000)
    (src / "shrinks.txt").write_bytes(b"short")
    store = LocalBlobStore(tmp_path / "blobs")
    with store.batch() as batch:
        result = ingest(files, batch, None, known_oids=set(), workers=1)
    for entry in result.manifest.files:
        data = (src / entry.path).read_bytes()
        assert (entry.oid, entry.size) == (hash_bytes(data), len(data))
        assert store.read_bytes(entry.oid) == data


def test_ingest_reads_on_after_a_short_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem may return less than asked (FUSE, network shares): the file is read
    to its end, not stored cut short."""
    src = tmp_path / "src"
    data = bytes(range(256)) * 40
    write_tree(src, {"f.bin": data})
    files = scan(src)
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 1000)))
    store = LocalBlobStore(tmp_path / "blobs")
    with store.batch() as batch:
        result = ingest(files, batch, None, known_oids=set(), workers=1)
    monkeypatch.undo()
    [entry] = result.manifest.files
    assert (entry.oid, entry.size) == (hash_bytes(data), len(data))
    assert store.read_bytes(entry.oid) == data


class _StopAfter:
    """A progress bar the user interrupts once ``n`` units are done."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0

    def task(self, description: str, total: float | None = None) -> None:
        return None

    def advance(self, amount: float = 1) -> None:
        self.done += int(amount)
        if self.done >= self.n:
            raise KeyboardInterrupt


def test_an_interrupted_pipeline_writes_nothing_after_its_batch_is_aborted(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    write_tree(src, {f"f{n}.txt": f"file {n}".encode() * 100 for n in range(2000)})
    store = LocalBlobStore(tmp_path / "blobs")
    progress = _StopAfter(64)
    puts: list[str] = []
    with pytest.raises(KeyboardInterrupt), store.batch() as batch:
        put_bytes = batch.put_bytes

        def slow_put(data: bytes, oid: str | None = None) -> PutResult:
            time.sleep(0.01)  # chunks still queued and running when the user stops
            puts.append(oid or "")
            return put_bytes(data, oid)

        batch.put_bytes = slow_put  # type: ignore[method-assign]
        ingest(scan(src), batch, None, known_oids=set(), progress=progress, workers=2)
    assert progress.done == 64  # stopped after the first chunk of 64 files
    # The window held five chunks of 64 files: those still queued when the user stopped
    # were dropped (the two workers may each have picked up one more in between).
    assert len(puts) < 5 * 64
    time.sleep(0.3)  # a worker still running would write within this
    assert list(store.iter_temp_files()) == []
    assert list(store.iter_oids()) == []


def test_ingest_pipeline_reports_a_file_that_vanished(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {f"f{n}.txt": f"file {n}".encode() for n in range(300)})
    files = scan(src)
    (src / "f150.txt").unlink()
    store = LocalBlobStore(tmp_path / "blobs")
    vanished = r"f150\.txt disappeared while it was being added"
    with pytest.raises(InputDataError, match=vanished), store.batch() as batch:
        ingest(files, batch, None, known_oids=set(), workers=2)
    assert list(store.iter_oids()) == []
    assert list(store.iter_temp_files()) == []


def test_ingest_counts_an_empty_file_as_added(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"empty.txt": b"", "full.txt": b"x"})
    store = LocalBlobStore(tmp_path / "blobs")
    with store.batch() as batch:
        result = ingest(scan(src), batch, cache=None, known_oids=set(), workers=1)
    assert set(store.iter_oids()) == {hash_bytes(b""), hash_bytes(b"x")}
    assert result.files_added == 2


def test_ingest_skips_known_blobs(tmp_path: Path, helpers: str) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha", "b.txt": b"beta"})
    store = LocalBlobStore(tmp_path / "blobs")
    with store.batch() as batch:
        result = ingest(scan(src), batch, None, known_oids={hash_bytes(b"alpha")}, workers=1)
    assert set(store.iter_oids()) == {hash_bytes(b"beta")}
    assert result.bytes_added == 4
    assert len(result.manifest.files) == 2


def test_files_modified_just_before_hashing_are_cached_but_not_younger_ones(
    tmp_path: Path,
) -> None:
    """A file last changed 0.5 s before its folder is hashed cannot change again unseen
    (its next mtime would differ); one changed as hashing starts (or stamped in the
    future), or a whole-second stamp within two seconds, could, so it is hashed again."""
    src = tmp_path / "src"
    names = ["settled.txt", "now.txt", "future.txt", "whole_second.txt", "whole_old.txt"]
    write_tree(src, {name: name.encode() for name in names})
    now_ns = time.time_ns()
    whole = now_ns // 1_000_000_000 * 1_000_000_000
    stamps = {
        "settled.txt": now_ns - 500_000_001,
        "now.txt": now_ns,
        "future.txt": now_ns + 3_000_000_000,
        "whole_second.txt": whole + 1_000_000_000,  # within two seconds, whatever the delay
        "whole_old.txt": whole - 3_000_000_000,
    }
    for name, ns in stamps.items():
        os.utime(src / name, ns=(ns, ns))
    cache = StatCache(tmp_path / "state" / "stat.db")
    try:
        store = LocalBlobStore(tmp_path / "blobs")
        with store.batch() as batch:
            ingest(scan(src), batch, cache, set(), workers=1, root=str(src.resolve()))
        assert sorted(cache.load(str(src.resolve()))) == ["settled.txt", "whole_old.txt"]
        with store.batch() as batch:
            again = ingest(scan(src), batch, cache, set(), workers=1, root=str(src.resolve()))
        assert again.files_hashed == 3
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("age_ns", "racy"),
    [
        (-1, True),  # stamped after hashing started
        (0, True),
        (50_000_000, True),  # within the margin of a fine-grained clock
        (100_000_000, True),
        (100_000_001, False),
        (3_000_000_000, False),
    ],
)
def test_racy_margin_for_fine_grained_mtimes(age_ns: int, racy: bool) -> None:
    started = 1_700_000_000_123_456_789
    assert _racy(started - age_ns, started) is racy


@pytest.mark.parametrize(
    ("mtime_ns", "racy"),
    [
        (1_700_000_003_000_000_000, True),  # whole seconds: a two-second margin
        (1_700_000_002_000_000_000, True),
        (1_700_000_001_000_000_000, False),
        (1_700_000_002_000_000_001, False),  # the same age in nanoseconds is settled
    ],
)
def test_racy_margin_for_whole_second_mtimes(mtime_ns: int, racy: bool) -> None:
    assert _racy(mtime_ns, 1_700_000_003_100_000_000) is racy


def test_ingest_uses_the_stat_cache_for_unchanged_files(tmp_path: Path, helpers: str) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha", "b.txt": b"beta"})
    old = 1_000_000_000  # well past the racy window
    for name in ("a.txt", "b.txt"):
        os.utime(src / name, (old, old))
    cache = StatCache(tmp_path / "state" / "stat.db")
    try:
        store = LocalBlobStore(tmp_path / "blobs")
        with store.batch() as batch:
            first = ingest(scan(src), batch, cache, known_oids=set(), workers=1)
        assert first.files_hashed == 2
        (src / "b.txt").write_bytes(b"BETA!")
        os.utime(src / "b.txt", (old + 5, old + 5))
        with store.batch() as batch:
            second = ingest(scan(src), batch, cache, known_oids=set(), workers=1)
        assert second.files_hashed == 1
        entries = second.manifest.by_path()
        assert entries["a.txt"].oid == hash_bytes(b"alpha")
        assert entries["b.txt"].oid == hash_bytes(b"BETA!")
    finally:
        cache.close()


def test_the_stat_cache_forgets_deleted_files_but_not_the_folder_of_one_file(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha", "b.txt": b"beta", "sub/c.txt": b"gamma"})
    for rel in ("a.txt", "b.txt", "sub/c.txt"):
        os.utime(src / rel, (OLD, OLD))
    root = str(src.resolve())
    cache = StatCache(tmp_path / "state" / "stat.db")
    store = LocalBlobStore(tmp_path / "blobs")
    try:
        with store.batch() as batch:
            ingest(scan(src), batch, cache, set(), workers=1, root=root, whole_folder=True)
        assert set(cache.load(root)) == {"a.txt", "b.txt", "sub/c.txt"}
        # One file of the folder, added alone: the others stay cached.
        (src / "a.txt").write_bytes(b"ALPHA")
        os.utime(src / "a.txt", (OLD + 5, OLD + 5))
        with store.batch() as batch:
            one = ingest(scan(src / "a.txt"), batch, cache, set(), workers=1, root=root)
        assert one.files_hashed == 1
        assert set(cache.load(root)) == {"a.txt", "b.txt", "sub/c.txt"}
        assert cache.load(root)["a.txt"][1] == hash_bytes(b"ALPHA")
        # The whole folder again, after deleting two files: their paths leave the cache.
        (src / "b.txt").unlink()
        (src / "sub" / "c.txt").unlink()
        with store.batch() as batch:
            again = ingest(scan(src), batch, cache, set(), workers=1, root=root, whole_folder=True)
        assert again.files_hashed == 0
        assert set(cache.load(root)) == {"a.txt"}
    finally:
        cache.close()


def test_the_stat_cache_is_left_alone_when_the_root_does_not_hold_the_files(
    tmp_path: Path,
    helpers: str,
) -> None:
    """As when a symbolic link on the way to the folder changes between scan and ingest."""
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha"})
    os.utime(src / "a.txt", (OLD, OLD))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = StatCache(tmp_path / "state" / "stat.db")
    store = LocalBlobStore(tmp_path / "blobs")
    try:
        cache.update(str(elsewhere.resolve()), [("c.txt", (1, 1, 1), "hc")])
        with store.batch() as batch:
            result = ingest(
                scan(src), batch, cache, set(), workers=1, root=str(elsewhere.resolve())
            )
        assert result.files_hashed == 1
        assert result.manifest.by_path()["a.txt"].oid == hash_bytes(b"alpha")
        assert cache.load(str(elsewhere.resolve())) == {"c.txt": ((1, 1, 1), "hc")}
    finally:
        cache.close()


# ---------------------------------------------------------------- what the stat cache may skip


def _ingest_twice(tmp_path: Path, change: Callable[[Path], None]) -> tuple[int, str]:
    """Add a folder, ``change`` it, add it again with the same stat cache: (files hashed
    the second time, the oid recorded for ``data.bin``)."""
    src = tmp_path / "src"
    write_tree(src, {"data.bin": b"0123456789", "other.bin": b"other"})
    for name in ("data.bin", "other.bin"):
        os.utime(src / name, (OLD, OLD))
    cache = StatCache(tmp_path / "state" / "stat.db")
    store = LocalBlobStore(tmp_path / "blobs")
    try:
        with store.batch() as batch:
            first = ingest(scan(src), batch, cache, known_oids=set(), workers=1)
        assert first.files_hashed == 2
        change(src / "data.bin")
        with store.batch() as batch:
            second = ingest(scan(src), batch, cache, known_oids=set(), workers=1)
    finally:
        cache.close()
    return second.files_hashed, second.manifest.by_path()["data.bin"].oid


def test_an_unchanged_folder_is_not_hashed_again(tmp_path: Path) -> None:
    hashed, oid = _ingest_twice(tmp_path, lambda path: None)
    assert (hashed, oid) == (0, hash_bytes(b"0123456789"))


def test_same_size_new_bytes_and_new_mtime_is_hashed_again(tmp_path: Path) -> None:
    def rewrite(path: Path) -> None:
        path.write_bytes(b"9876543210")
        os.utime(path, (OLD + 10, OLD + 10))

    assert _ingest_twice(tmp_path, rewrite) == (1, hash_bytes(b"9876543210"))


def test_same_size_and_mtime_but_a_new_inode_is_hashed_again(tmp_path: Path, helpers: str) -> None:
    def replace(path: Path) -> None:
        new = path.with_name("tmp")
        new.write_bytes(b"abcdefghij")
        os.utime(new, (OLD, OLD))
        os.replace(new, path)  # a new inode under the old name, size and mtime

    assert _ingest_twice(tmp_path, replace) == (1, hash_bytes(b"abcdefghij"))


def test_same_mtime_and_inode_but_a_new_size_is_hashed_again(tmp_path: Path) -> None:
    def grow(path: Path) -> None:
        with open(path, "ab") as f:
            f.write(b"!")
        os.utime(path, (OLD, OLD))

    assert _ingest_twice(tmp_path, grow) == (1, hash_bytes(b"0123456789!"))


def test_folder_changes_uses_the_cache_only_where_the_stat_matches(
    tmp_path: Path, helpers: str
) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha", "b.txt": b"beta", "c.txt": b"gamma"})
    for name in ("a.txt", "b.txt", "c.txt"):
        os.utime(src / name, (OLD, OLD))
    cache_path = tmp_path / "state" / "stat.db"
    cache = StatCache(cache_path)
    try:
        with LocalBlobStore(tmp_path / "blobs").batch() as batch:
            added = ingest(scan(src), batch, cache, known_oids=set(), workers=1)
    finally:
        cache.close()
    index = file_index(added.manifest.to_bytes(), "t@1")
    assert folder_changes(src, index, cache_path).clean
    (src / "b.txt").write_bytes(b"BETA")  # same size
    os.utime(src / "b.txt", (OLD + 1, OLD + 1))
    (src / "c.txt").rename(src / "d.txt")
    (src / "e.txt").write_bytes(b"new")
    changes = folder_changes(src, index, cache_path)
    assert changes == FileChanges(["e.txt"], [], ["b.txt"], [("c.txt", "d.txt")])
    assert changes == compare(added.manifest, current_manifest(src, cache_path))


def test_folder_changes_of_a_single_file(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_bytes(b"a,b\n1,2\n")
    cache_path = tmp_path / "state" / "stat.db"
    assert folder_changes(one, {"one.csv": hash_bytes(b"a,b\n1,2\n")}, cache_path).clean
    one.write_bytes(b"a,b\n1,3\n")
    changes = folder_changes(one, {"one.csv": hash_bytes(b"a,b\n1,2\n")}, cache_path)
    assert changes == FileChanges([], [], ["one.csv"], [])


# ---------------------------------------------------------------- manifest bytes


def test_manifest_bytes_keep_their_format(tmp_path: Path) -> None:
    """The manifest's bytes are its version's content hash: the same content must give
    the same bytes in every release."""
    files = FileManifest(
        (
            FileEntry("b/ü.txt", "22", 2, 0o755),
            FileEntry("a.txt", "11", 1, 0o644),
        )
    )
    assert files.to_bytes() == (
        b'{"kind":"files","files":[["a.txt","11",1,420],["b/\\u00fc.txt","22",2,493]]}'
    )
    assert load_manifest(files.to_bytes(), "t@1") == FileManifest(
        tuple(sorted(files.files, key=lambda e: e.path))
    )
    assert file_index(files.to_bytes(), "t@1") == {"a.txt": "11", "b/ü.txt": "22"}


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1),  # any path: quotes, control characters, non-ASCII, surrogates
        st.tuples(st.text(), st.integers(min_value=0, max_value=2**63 - 1), st.integers(0, 511)),
        max_size=12,
    )
)
def test_the_c_manifest_encoder_writes_what_json_writes(
    rows: dict[str, tuple[str, int, int]],
) -> None:
    files = FileManifest(tuple(FileEntry(p, o, s, m) for p, (o, s, m) in rows.items()))
    entries = sorted(files.files, key=lambda e: e.path)
    assert files.to_bytes() == manifest_module._json_file_rows(entries)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1),
        st.tuples(st.text(), st.integers(min_value=0, max_value=2**63 - 1), st.integers(0, 511)),
        max_size=12,
    ),
    st.integers(min_value=0),
)
def test_the_c_manifest_reader_finds_the_oids_json_finds(
    rows: dict[str, tuple[str, int, int]], cut: int
) -> None:
    data = FileManifest(tuple(FileEntry(p, o, s, m) for p, (o, s, m) in rows.items())).to_bytes()
    expected = {o for _p, o, _s, _m in json.loads(data)["files"]}
    found = manifest_module._c_file_manifest_oids(data)
    # An oid json writes escaped is left to json; any other is read in C.
    assert found == expected or (found is None and any("\\" in json.dumps(o) for o in expected))
    assert file_oids(data, "t@1") == expected
    # Cut short anywhere, the manifest is never read as a smaller one.
    assert manifest_module._c_file_manifest_oids(data[: cut % (len(data) + 1)]) in (None, expected)


def test_the_c_manifest_reader_leaves_other_layouts_to_json() -> None:
    rows = [["a b", "11", 1, 420], ["c", "22", 2, 493]]
    spaced = json.dumps({"kind": "files", "files": rows}).encode()
    assert manifest_module._c_file_manifest_oids(spaced) is None
    assert file_oids(spaced, "t@1") == {"11", "22"}
    table = b'{"kind":"table","format":"parquet","schema":[],"parts":[]}'
    assert manifest_module._c_file_manifest_oids(table) is None
    # What json refuses is left to json to refuse, never read as a manifest in C.
    head = b'{"kind":"files","files":[['
    for row in (
        b'"a\x01","11",1,420',  # a raw control character
        b'"a","11",01,420',  # a leading zero
        b'"a\\q","11",1,420',  # an escape json does not know
        b'"a\\u12G4","11",1,420',
        b'"caf\xc3\xa9","11",1,420',  # raw UTF-8 (json.dumps escapes it)
    ):
        data = head + row + b"]]}"
        assert manifest_module._c_file_manifest_oids(data) is None, data
        try:
            json.loads(data)
        except ValueError:
            with pytest.raises(IntegrityError, match="unreadable"):
                file_oids(data, "t@1")
        else:
            assert file_oids(data, "t@1") == {"11"}
    with pytest.raises(IntegrityError, match="not a file manifest"):
        file_oids(table, "t@1")
    with pytest.raises(IntegrityError, match="unreadable"):
        file_oids(b'{"kind":"files","files":[["a","1",1]]}', "t@1")


def test_the_c_manifest_encoder_holds_its_rows_while_escaping() -> None:
    rows = [FileEntry(f"ü{n}", "ab", n, 0o644) for n in range(100)]
    expected = manifest_module._json_file_rows(list(rows))
    work = list(rows)

    def escape_and_meddle(s: str) -> str:
        work.clear()  # Python code run in the middle of the encoding
        return encode_basestring_ascii(s)

    assert manifest_module._c_encode_file_rows(work, escape_and_meddle) == expected


def test_the_c_manifest_encoder_refuses_rows_of_another_shape() -> None:
    for bad in ([("a", "1", 1)], [("a", 1, 1, 1)], [("a", "1", "1", 1)], [["a", "1", 1, 1]]):
        with pytest.raises(TypeError, match="manifest row"):
            manifest_module._encode_file_rows(bad)  # type: ignore[arg-type]


def test_file_index_refuses_a_broken_or_table_manifest() -> None:
    with pytest.raises(IntegrityError, match="unreadable"):
        file_index(b'{"kind": "files", "files": [["a", "1", 1]]}', "t@1")
    with pytest.raises(IntegrityError, match="not a file manifest"):
        file_index(b'{"kind": "table", "parts": []}', "t@1")
