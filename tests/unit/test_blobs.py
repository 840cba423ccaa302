"""Blob stores, local folder and S3: batches, deduplication, verification on read."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcycle.blobs import BlobStore, PutResult, copying, open_blob_store, shard
from modelcycle.blobs.local import LocalBlobStore, storage_error
from modelcycle.blobs.s3 import S3BlobStore
from modelcycle.core.errors import (
    BlobCorruptedError,
    InputDataError,
    NotFoundError,
    StorageError,
    UsageError,
)
from modelcycle.core.hashing import hash_bytes, hash_file
from servers import S3Location

MISSING = "ab" + "0" * 62


def s3_options(endpoint_url: str) -> dict[str, str]:
    return {
        "endpoint_url": endpoint_url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield open_blob_store(str(tmp_path / "blobs"))
        return
    loc: S3Location = request.getfixturevalue("s3_bucket_url")
    s3 = open_blob_store(loc.url, s3_options(loc.endpoint_url))
    assert isinstance(s3, S3BlobStore)
    try:
        yield s3
    finally:
        s3.client.close()


def put(store: BlobStore, *blobs: bytes) -> list[PutResult]:
    with store.batch() as batch:
        return [batch.put_bytes(b) for b in blobs]


def overwrite(store: BlobStore, oid: str, data: bytes) -> None:
    """Replace a stored blob's bytes behind the store's back."""
    if isinstance(store, LocalBlobStore):
        path = store.path(oid)
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        store.client.put_object(Bucket=store.bucket, Key=store.key(oid), Body=data)


# ---------------------------------------------------------------- both backends


def test_put_bytes_then_read_back(store: BlobStore) -> None:
    [result] = put(store, b"hello blobs")
    assert result == PutResult(hash_bytes(b"hello blobs"), 11, added=True)
    assert store.exists(result.oid)
    assert store.size(result.oid) == 11
    assert store.read_bytes(result.oid) == b"hello blobs"
    with store.open_raw(result.oid) as f:
        assert f.read() == b"hello blobs"
    store.verify(result.oid)


def test_put_file_then_read_back(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(3000))
    oid = hash_file(src)
    with store.batch() as batch:
        result = batch.put_file(src, oid, 3000)
    assert result == PutResult(oid, 3000, added=True)
    assert store.read_bytes(oid) == src.read_bytes()
    assert src.read_bytes()  # the source is left where it was


def test_the_empty_blob(store: BlobStore) -> None:
    [result] = put(store, b"")
    assert result.size == 0
    assert store.read_bytes(result.oid) == b""


def test_dedup_within_a_batch(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "same.txt"
    src.write_bytes(b"same")
    with store.batch() as batch:
        first = batch.put_bytes(b"same")
        second = batch.put_bytes(b"same")
        third = batch.put_file(src, hash_bytes(b"same"), 4)
    assert (first.added, second.added, third.added) == (True, False, False)
    assert first.oid == second.oid == third.oid
    assert list(store.iter_oids()) == [first.oid]


def test_dedup_across_batches(store: BlobStore, tmp_path: Path) -> None:
    [first] = put(store, b"once")
    [again] = put(store, b"once")
    assert first.added is True
    assert again == PutResult(first.oid, 4, added=False)
    src = tmp_path / "once.txt"
    src.write_bytes(b"once")
    with store.batch() as batch:
        assert batch.put_file(src, first.oid, 4).added is False


def test_iter_oids_lists_exactly_what_was_stored(store: BlobStore) -> None:
    assert list(store.iter_oids()) == []
    results = put(store, b"a", b"b", b"c", b"a")
    assert sorted(store.iter_oids()) == sorted({r.oid for r in results})
    assert len(list(store.iter_oids())) == 3


def test_exists_many(store: BlobStore) -> None:
    a, b = put(store, b"a", b"b")
    assert store.exists_many([a.oid, b.oid, MISSING]) == {a.oid, b.oid}
    assert store.exists(MISSING) is False


def test_remove(store: BlobStore) -> None:
    a, b = put(store, b"keep", b"drop")
    store.remove(b.oid)
    assert not store.exists(b.oid)
    assert list(store.iter_oids()) == [a.oid]
    store.remove(b.oid)  # removing twice is harmless
    [again] = put(store, b"drop")
    assert again.added is True


def test_missing_blob_raises_not_found(store: BlobStore, tmp_path: Path) -> None:
    for call in (store.read_bytes, store.open_raw, store.size, store.verify):
        with pytest.raises(NotFoundError) as info:
            call(MISSING)
        assert MISSING in info.value.message
        assert info.value.details["oid"] == MISSING
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(NotFoundError):
        store.get_file(MISSING, out / "copy.bin")
    assert list(out.iterdir()) == []


def test_get_file_copies_the_blob(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(5000)
    [result] = put(store, data)
    dest = tmp_path / "out" / "copy.bin"
    dest.parent.mkdir()
    store.get_file(result.oid, dest)
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"]


def test_get_file_replaces_an_existing_file(store: BlobStore, tmp_path: Path) -> None:
    [result] = put(store, b"new content")
    dest = tmp_path / "copy.bin"
    dest.write_bytes(b"old")
    store.get_file(result.oid, dest)
    assert dest.read_bytes() == b"new content"


def test_a_corrupted_blob_is_caught_on_read(store: BlobStore) -> None:
    [result] = put(store, b"precious data")
    overwrite(store, result.oid, b"precious dat4")
    with pytest.raises(BlobCorruptedError) as info:
        store.read_bytes(result.oid)
    error = info.value
    assert result.oid in error.message
    assert hash_bytes(b"precious dat4") in error.message
    assert error.details["oid"] == result.oid
    assert isinstance(error, StorageError)
    with pytest.raises(BlobCorruptedError):
        store.verify(result.oid)


def test_get_file_of_a_corrupted_blob_leaves_no_file(store: BlobStore, tmp_path: Path) -> None:
    [result] = put(store, b"x" * 10_000)
    overwrite(store, result.oid, b"y" * 10_000)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BlobCorruptedError, match=result.oid):
        store.get_file(result.oid, out / "copy.bin")
    assert list(out.iterdir()) == []


def test_get_file_of_a_corrupted_blob_keeps_an_existing_dest(
    store: BlobStore, tmp_path: Path
) -> None:
    [result] = put(store, b"good")
    overwrite(store, result.oid, b"evil")
    dest = tmp_path / "copy.bin"
    dest.write_bytes(b"previous")
    with pytest.raises(BlobCorruptedError):
        store.get_file(result.oid, dest)
    assert dest.read_bytes() == b"previous"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=4096))
def test_round_trip_of_arbitrary_bytes(store: BlobStore, data: bytes) -> None:
    # One store serves every example: blobs are named by content, so earlier ones do no harm.
    [result] = put(store, data)
    assert result.oid == hash_bytes(data)
    assert result.size == len(data)
    assert store.exists(result.oid)
    assert store.read_bytes(result.oid) == data
    assert result.oid in set(store.iter_oids())


# ---------------------------------------------------------------- local folder


@pytest.fixture
def local(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def test_local_blobs_are_sharded_and_read_only(local: LocalBlobStore, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"from a file")
    src.chmod(0o644)
    with local.batch() as batch:
        from_bytes = batch.put_bytes(b"from bytes")
        from_file = batch.put_file(src, hash_bytes(b"from a file"), 11)
    for oid in (from_bytes.oid, from_file.oid):
        path = local.root / oid[:2] / oid[2:]
        assert shard(oid) == f"{oid[:2]}/{oid[2:]}"
        assert local.path(oid) == path
        assert path.read_bytes() in (b"from bytes", b"from a file")
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o222 == 0, oct(mode)  # nobody may write
        assert mode & 0o400, oct(mode)
    assert stat.S_IMODE(local.path(from_file.oid).stat().st_mode) == 0o444
    assert _files_under(local.root) == sorted(
        local.path(o) for o in (from_bytes.oid, from_file.oid)
    )


def test_local_pending_blobs_are_invisible_until_commit(local: LocalBlobStore) -> None:
    batch = local.batch()
    result = batch.put_bytes(b"pending")
    assert not local.exists(result.oid)
    assert list(local.iter_oids()) == []
    with pytest.raises(NotFoundError):
        local.read_bytes(result.oid)
    batch.commit()
    assert local.read_bytes(result.oid) == b"pending"
    assert list(local.iter_temp_files()) == []


def test_local_abort_leaves_nothing(local: LocalBlobStore, tmp_path: Path) -> None:
    [kept] = put(local, b"committed earlier")
    src = tmp_path / "f.bin"
    src.write_bytes(b"file in the failed batch")
    with pytest.raises(RuntimeError), local.batch() as batch:
        added = batch.put_bytes(b"bytes in the failed batch")
        batch.put_file(src, hash_file(src), src.stat().st_size)
        raise RuntimeError("the caller failed half-way")
    assert not local.exists(added.oid)
    assert not local.exists(hash_file(src))
    assert list(local.iter_oids()) == [kept.oid]
    assert list(local.iter_temp_files()) == []
    assert _files_under(local.root) == [local.path(kept.oid)]


def test_local_abort_then_the_same_blob_can_be_added(local: LocalBlobStore) -> None:
    batch = local.batch()
    oid = batch.put_bytes(b"retry me").oid
    batch.abort()
    [again] = put(local, b"retry me")
    assert again == PutResult(oid, 8, added=True)
    assert local.read_bytes(oid) == b"retry me"


def test_local_commit_twice_is_harmless(local: LocalBlobStore) -> None:
    batch = local.batch()
    oid = batch.put_bytes(b"x").oid
    batch.commit()
    batch.commit()
    assert list(local.iter_oids()) == [oid]


def test_local_iter_oids_skips_leftovers_of_a_crash(local: LocalBlobStore) -> None:
    [kept] = put(local, b"kept")
    crashed = local.batch()
    crashed.put_bytes(b"never committed")  # the process "dies" here: no commit, no abort
    (local.root / "zz_not_a_shard").mkdir()
    assert list(local.iter_oids()) == [kept.oid]
    [leftover] = local.iter_temp_files()
    # Its shard folder did not exist: the blob was staged in the batch's own folder.
    assert leftover.name.startswith(".tmp-batch-")
    assert [p.read_bytes() for p in leftover.rglob("*") if p.is_file()] == [b"never committed"]
    crashed.abort()
    assert list(local.iter_temp_files()) == []


def in_shard(oid: str, label: str) -> bytes:
    """Content whose blob falls in the same shard folder as ``oid``."""
    return next(
        data for n in range(100_000) if hash_bytes(data := f"{label} {n}".encode())[:2] == oid[:2]
    )


def test_local_batch_into_an_existing_shard_leaves_a_temp_file(local: LocalBlobStore) -> None:
    [kept] = put(local, b"kept")
    same_shard = in_shard(kept.oid, "other")
    crashed = local.batch()
    crashed.put_bytes(same_shard)
    [leftover] = local.iter_temp_files()
    assert leftover.parent == local.root / kept.oid[:2]
    assert leftover.name.startswith(".tmp-")
    assert leftover.read_bytes() == same_shard
    crashed.abort()
    assert list(local.iter_temp_files()) == []


def test_local_batch_stages_new_shards_and_places_them_whole(local: LocalBlobStore) -> None:
    datas = [f"blob {n}".encode() for n in range(600)]
    batch = local.batch()
    results = [batch.put_bytes(d) for d in datas]
    [staging] = local.iter_temp_files()
    staged = {p.name: p.stat().st_ino for p in staging.iterdir()}
    assert len(staged) > 200  # most shards were new
    batch.commit()
    # Each staged shard folder is the store's shard folder now: renamed, not refilled.
    assert {name: (local.root / name).stat().st_ino for name in staged} == staged
    assert sorted(local.iter_oids()) == sorted(r.oid for r in results)
    assert all(local.read_bytes(r.oid) == d for r, d in zip(results, datas, strict=True))
    assert list(local.iter_temp_files()) == []
    assert not any(p.name.startswith(".tmp-") for p in local.root.iterdir())


def test_local_batch_places_staged_blobs_into_a_shard_made_meanwhile(
    local: LocalBlobStore,
) -> None:
    first, second = local.batch(), local.batch()
    one = first.put_bytes(b"from the first batch")
    # Another batch (another process, say) makes the same shard folder first.
    same_shard = in_shard(one.oid, "second")
    two = second.put_bytes(same_shard)
    second.commit()
    first.commit()
    assert sorted(local.iter_oids()) == sorted([one.oid, two.oid])
    assert local.read_bytes(one.oid) == b"from the first batch"
    assert local.read_bytes(two.oid) == same_shard
    assert list(local.iter_temp_files()) == []


def test_local_batch_commits_a_shard_holding_staged_and_direct_blobs(
    local: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads of one batch ask about a new shard while another process makes it:
    the first finds no folder (and stages), the second lists the folder another process
    just made (and writes a temporary file in it). Both blobs are committed."""
    first_data = b"first thread"
    first_oid = hash_bytes(first_data)
    second_data = in_shard(first_oid, "second thread")
    shard_dir = local.root / first_oid[:2]
    batch = local.batch()
    real_isdir = os.path.isdir
    second: list[PutResult] = []

    def isdir_then_interleave(path: str) -> bool:
        if path == str(shard_dir) and not second:
            found = real_isdir(path)
            shard_dir.mkdir()  # another process makes the shard folder
            second.append(batch.put_bytes(second_data))  # the second thread runs now
            return found
        return real_isdir(path)

    monkeypatch.setattr(os.path, "isdir", isdir_then_interleave)
    first = batch.put_bytes(first_data)
    monkeypatch.undo()
    assert first.added and second[0].added
    batch.commit()
    assert sorted(local.iter_oids()) == sorted([first.oid, second[0].oid])
    assert local.read_bytes(first.oid) == first_data
    assert local.read_bytes(second[0].oid) == second_data
    assert list(local.iter_temp_files()) == []


def test_local_batch_never_reuses_a_crashed_batchs_staging_folder(
    local: LocalBlobStore,
) -> None:
    crashed = local.batch()
    crashed.put_bytes(b"complete content")  # the process "dies" here
    [leftover] = local.iter_temp_files()
    [half] = [p for p in leftover.rglob("*") if p.is_file()]
    half.chmod(0o644)
    half.write_bytes(b"comp")  # as if the crash came mid-write
    [result] = put(local, b"complete content")
    assert local.read_bytes(result.oid) == b"complete content"
    assert list(local.iter_temp_files()) == [leftover]  # left for gc, never renamed


@pytest.fixture
def small_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Direct copies from 1 MiB in chunks of 256 KiB, so a test file of a few MiB
    takes the path a file of gigabytes takes."""
    monkeypatch.setattr(copying, "DIRECT_MIN", 1 << 20)
    monkeypatch.setattr(copying, "_CHUNK", 256 << 10)


@pytest.mark.parametrize("size", [1 << 20, (3 << 20) + 5, (3 << 20) - 4096])
def test_local_big_files_are_copied_direct_and_whole(
    local: LocalBlobStore, tmp_path: Path, small_direct: None, size: int
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(size))
    fd, direct = copying.open_for_copy(str(tmp_path / "probe"), size)
    os.close(fd)
    assert direct  # the test's filesystem takes direct writes: that path is what runs
    oid = hash_file(src)
    with local.batch() as batch:
        assert batch.put_file(src, oid, size) == PutResult(oid, size, added=True)
    assert local.read_bytes(oid) == src.read_bytes()
    assert stat.S_IMODE(local.path(oid).stat().st_mode) == 0o444


def test_local_copy_falls_back_to_buffered_where_direct_io_is_refused(
    local: LocalBlobStore, tmp_path: Path, small_direct: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on ramfs or many FUSE filesystems, which refuse O_DIRECT with EINVAL."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom((2 << 20) + 1))
    real_fcntl = fcntl.fcntl

    def no_direct_io(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", no_direct_io)
    fd, direct = copying.open_for_copy(str(tmp_path / "probe"), 2 << 20)
    os.close(fd)
    assert not direct
    oid = hash_file(src)
    with local.batch() as batch:
        batch.put_file(src, oid, src.stat().st_size)
    monkeypatch.undo()
    assert local.read_bytes(oid) == src.read_bytes()
    assert stat.S_IMODE(local.path(oid).stat().st_mode) == 0o444
    assert list(local.iter_temp_files()) == []


@pytest.mark.parametrize("size", [3000, 3 << 20])
def test_local_a_file_changed_after_hashing_is_refused_not_stored(
    local: LocalBlobStore, tmp_path: Path, small_direct: None, size: int
) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(size))
    oid = hash_file(src)
    src.write_bytes(os.urandom(size))  # a writer changes it before it is copied
    changed = pytest.raises(InputDataError, match="changed while it was being added")
    with changed, local.batch() as batch:
        batch.put_file(src, oid, size)
    assert not local.exists(oid)
    assert list(local.iter_oids()) == []
    assert list(local.iter_temp_files()) == []


def test_local_store_on_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "not" / "yet")
    assert list(store.iter_oids()) == []
    assert list(store.iter_temp_files()) == []
    [result] = put(store, b"first")
    assert store.read_bytes(result.oid) == b"first"


@pytest.mark.parametrize(
    ("code", "in_message"),
    [
        (errno.ENOSPC, "is full"),
        (errno.EACCES, "cannot write to"),
        (errno.EROFS, "cannot write to"),
        (errno.EIO, "blob store error"),
    ],
)
def test_storage_error_explains_the_os_error(code: int, in_message: str) -> None:
    error = storage_error(OSError(code, os.strerror(code)), "/some/blobs")
    assert isinstance(error, StorageError)
    assert in_message in error.message
    assert "/some/blobs" in error.message
    assert error.hint


# ---------------------------------------------------------------- S3 specifics


@pytest.mark.s3
def test_s3_keys_live_under_the_prefix(s3_bucket_url: S3Location) -> None:
    s3 = open_blob_store(s3_bucket_url.url, s3_options(s3_bucket_url.endpoint_url))
    assert isinstance(s3, S3BlobStore)
    try:
        [result] = put(s3, b"keyed")
        assert s3.key(result.oid) == f"modelcycle/{result.oid[:2]}/{result.oid[2:]}"
        listed = s3.client.list_objects_v2(Bucket=s3.bucket)
        assert [o["Key"] for o in listed["Contents"]] == [s3.key(result.oid)]
        # an object outside the shard layout is not a blob
        s3.client.put_object(Bucket=s3.bucket, Key="modelcycle/notes.txt", Body=b"x")
        s3.client.put_object(Bucket=s3.bucket, Key="modelcycle/ab/cd/ef", Body=b"x")
        assert list(s3.iter_oids()) == [result.oid]
    finally:
        s3.client.close()


# ---------------------------------------------------------------- choosing a backend


def test_open_blob_store_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    plain = open_blob_store(str(tmp_path / "a"))
    assert isinstance(plain, LocalBlobStore)
    assert plain.root == tmp_path / "a"
    with_scheme = open_blob_store(f"file://{tmp_path / 'b'}")
    assert isinstance(with_scheme, LocalBlobStore)
    assert with_scheme.root == tmp_path / "b"


@pytest.mark.parametrize("url", ["ftp://x", "gs://bucket/prefix", "http://example.com/b"])
def test_open_blob_store_rejects_unknown_schemes(url: str) -> None:
    with pytest.raises(UsageError) as info:
        open_blob_store(url)
    assert "unknown blob store scheme" in info.value.message
    assert info.value.hint is not None
    assert "s3://" in info.value.hint


def test_an_s3_url_needs_a_bucket() -> None:
    with pytest.raises(UsageError, match="names no bucket"):
        open_blob_store("s3:///prefix")
