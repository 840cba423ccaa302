"""Folders of files: scanning, ingesting into a blob store, and comparing manifests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelcycle.blobs.local import LocalBlobStore
from modelcycle.core.errors import NotFoundError
from modelcycle.core.hashing import hash_bytes
from modelcycle.core.statcache import StatCache
from modelcycle.data.files import FileChanges, compare, ingest, scan
from modelcycle.data.manifest import FileEntry, FileManifest


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


def test_scan_lists_files_sorted_and_skips_tool_folders(tmp_path: Path) -> None:
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


def test_scan_records_size_mtime_inode_and_mode(tmp_path: Path) -> None:
    write_tree(tmp_path, {"run.sh": b"#!/bin/sh\n", "data.txt": b"12345"})
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "data.txt").chmod(0o600)
    by_rel = {f.rel: f for f in scan(tmp_path)}
    st = (tmp_path / "data.txt").stat()
    assert by_rel["data.txt"].key == (5, st.st_mtime_ns, st.st_ino)
    assert by_rel["data.txt"].mode == 0o644  # only the executable bit is kept
    assert by_rel["run.sh"].mode == 0o755


def test_scan_a_single_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"one.csv": b"a,b\n"})
    [found] = scan(tmp_path / "one.csv")
    assert found.rel == "one.csv"
    assert found.key[0] == 4


def test_scan_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        scan(tmp_path / "nope")


def test_scan_does_not_follow_folder_symlinks(tmp_path: Path) -> None:
    write_tree(tmp_path, {"real/f.txt": b"f", "outside/g.txt": b"g"})
    root = tmp_path / "real"
    os.symlink(tmp_path / "outside", root / "link")
    assert [f.rel for f in scan(root)] == ["f.txt"]


# ---------------------------------------------------------------- ingest


def test_ingest_stores_every_file_and_builds_the_manifest(tmp_path: Path) -> None:
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


def test_ingest_counts_an_empty_file_as_added(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"empty.txt": b"", "full.txt": b"x"})
    store = LocalBlobStore(tmp_path / "blobs")
    with store.batch() as batch:
        result = ingest(scan(src), batch, cache=None, known_oids=set(), workers=1)
    assert set(store.iter_oids()) == {hash_bytes(b""), hash_bytes(b"x")}
    assert result.files_added == 2


def test_ingest_skips_known_blobs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha", "b.txt": b"beta"})
    store = LocalBlobStore(tmp_path / "blobs")
    with store.batch() as batch:
        result = ingest(scan(src), batch, None, known_oids={hash_bytes(b"alpha")}, workers=1)
    assert set(store.iter_oids()) == {hash_bytes(b"beta")}
    assert result.bytes_added == 4
    assert len(result.manifest.files) == 2


def test_ingest_uses_the_stat_cache_for_unchanged_files(tmp_path: Path) -> None:
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
