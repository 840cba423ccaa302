"""Blobs in a local folder: ``ROOT/ab/cdef…``, read-only files, made durable per batch.

A batch writes every new blob to a temporary name first, syncs the filesystem once,
renames the blobs into place and syncs again. A blob under its final name is therefore
always complete, even after a crash, and a crash costs at most unreferenced blobs and
``.tmp-`` leftovers (``gc`` removes both). One filesystem sync per batch instead of one
fsync per file is what makes adding 20,000 small files fast.

The temporary name of a blob whose shard folder exists is ``ROOT/ab/.tmp-cdef….PID``.
A shard folder that does not exist yet is built whole in the batch's own staging folder
(``ROOT/.tmp-batch-PID-XXXXXXXX/ab/cdef…``, a name no other batch has used) and renamed
into place in one step: the first add to a new store renames 256 folders instead of one
file per blob.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelcycle.blobs.base import BlobBatch, BlobStore, PutResult, shard
from modelcycle.blobs.copying import copy_hashing, open_for_copy, write_all
from modelcycle.core.errors import InputDataError, StorageError
from modelcycle.core.hashing import hash_bytes


def _ctypes_syncfs(fd: int) -> None:
    """syncfs(2) through ctypes, where the C helpers were not built (or os.sync)."""
    import ctypes  # here: 3 ms to import, and only this fallback needs it

    libc_syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    if libc_syncfs is None or libc_syncfs(fd) != 0:
        raise OSError(ctypes.get_errno(), "syncfs failed")


try:
    from modelcycle.core._native import syncfs as _syncfs
except ImportError:
    _syncfs = _ctypes_syncfs


def syncfs(path: Path) -> None:
    """Flush every dirty page of the filesystem holding ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _syncfs(fd)
    except OSError:
        os.sync()  # no syncfs here: every filesystem, which covers this one
    finally:
        os.close(fd)


def storage_error(e: OSError, where: Path | str) -> StorageError:
    if e.errno == errno.ENOSPC:
        return StorageError(
            f"the disk holding {where} is full",
            hint="free some space (`modelcycle gc` removes unreferenced blobs) and retry",
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"cannot write to {where}: {e.strerror}",
            hint="check the folder's permissions, or point [blobs] url in modelcycle.toml "
            "elsewhere",
        )
    return StorageError(f"blob store error at {where}: {e}", hint="check the disk and retry")


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, oid: str) -> Path:
        return self.root / shard(oid)

    def exists(self, oid: str) -> bool:
        return os.path.exists(self.root / shard(oid))

    def batch(self) -> LocalBatch:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, self.root) from e
        return LocalBatch(self)

    def open_raw(self, oid: str) -> BinaryIO:
        try:
            return open(self.path(oid), "rb")
        except FileNotFoundError:
            raise self._missing(oid) from None

    def size(self, oid: str) -> int:
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            raise self._missing(oid) from None

    def iter_oids(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for top in os.scandir(self.root):
            if len(top.name) != 2 or not top.is_dir():
                continue
            for entry in os.scandir(top.path):
                if not entry.name.startswith("."):
                    yield top.name + entry.name

    def remove(self, oid: str) -> None:
        self.path(oid).unlink(missing_ok=True)

    def iter_temp_files(self) -> Iterator[Path]:
        """Leftovers of interrupted batches (staging folders ``.tmp-batch-…`` and
        ``ab/.tmp-…`` files) and of older layouts (``tmp/``)."""
        if not self.root.is_dir():
            return
        for top in os.scandir(self.root):
            if top.name.startswith(_STAGING):
                yield Path(top.path)
            elif top.name == "tmp" and top.is_dir():
                yield from (Path(e.path) for e in os.scandir(top.path))
            elif len(top.name) == 2 and top.is_dir():
                for entry in os.scandir(top.path):
                    if entry.name.startswith(".tmp-"):
                        yield Path(entry.path)


_STAGING = ".tmp-batch-"


def _rename_into(src: str | os.PathLike[str], tmp: str) -> bool:
    """Rename ``src`` to ``tmp``; False when they are on different filesystems."""
    try:
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        os.rename(src, tmp)
    except OSError as e:
        if e.errno == errno.EXDEV:
            return False
        raise
    return True


def _rename_all(pairs: list[tuple[str, str]]) -> None:
    for src, dest in pairs:
        os.replace(src, dest)


def _place_shard(staged: str, shard_dir: str) -> None:
    """Move a shard folder built in a staging folder into place: whole when the store
    still has no such shard (one rename), else blob by blob (another batch made it)."""
    try:
        os.rename(staged, shard_dir)  # replaces nothing but an empty folder
        return
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    _rename_all([(e.path, f"{shard_dir}/{e.name}") for e in os.scandir(staged)])
    os.rmdir(staged)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class LocalBatch(BlobBatch):
    # Paths are plain strings here: a batch of 20,000 small blobs is written by a few
    # threads, and the time spent building path objects is time they hold the GIL.

    def __init__(self, store: LocalBlobStore) -> None:
        self.store = store
        self._root = os.fspath(store.root)
        self._pending: dict[str, str] = {}  # oid -> the temporary file written
        # Names stored in each shard folder, listed once when the batch asks about a
        # second blob in that shard: one listdir per shard is much cheaper than one stat
        # per blob when a batch holds many blobs. The first blob of a shard gets a stat.
        self._listed: dict[str, set[str]] = {}
        self._touched: set[str] = set()  # shards asked about at least once
        self._new_shards: set[str] = set()  # shards the store lacked: built in staging
        self._staging: str | None = None  # made, with a fresh name, for the first of them
        self._tmp_suffix = f".{os.getpid()}"
        self._lock = threading.Lock()
        self._closed = False

    def _claim(self, oid: str) -> str | None:
        """The temporary path to write ``oid`` to, or None when it is stored or pending."""
        top, rest = oid[:2], oid[2:]
        shard_dir = f"{self._root}/{top}"
        with self._lock:
            if oid in self._pending:
                return None
            listed = self._listed.get(top)
            first_in_shard = top not in self._touched
            self._touched.add(top)
        if listed is None and first_in_shard:
            # A batch of a few blobs (a re-add after a few changes) mostly touches each
            # shard once: one stat is cheaper than listing the shard.
            stored = os.path.exists(f"{shard_dir}/{rest}")
            if not stored and not os.path.isdir(shard_dir):
                self._new_shard(top)
        else:
            if listed is None:
                try:
                    listed = set(os.listdir(shard_dir))
                except FileNotFoundError:
                    listed = self._new_shard(top)
                with self._lock:
                    listed = self._listed.setdefault(top, listed)
            stored = rest in listed
        with self._lock:
            # A blob another process stores after the check is simply written again:
            # same bytes, and the rename replaces it atomically.
            if oid in self._pending or stored:
                return None
            if top in self._new_shards and self._staging is not None:
                tmp = f"{self._staging}/{top}/{rest}"
            else:
                tmp = f"{shard_dir}/.tmp-{rest}{self._tmp_suffix}"
            self._pending[oid] = tmp
            return tmp

    def _new_shard(self, top: str) -> set[str]:
        """Note that the store has no shard folder ``top``: its blobs are staged."""
        with self._lock:
            if self._staging is None:
                # A name no other batch, live or crashed, has used: a crashed batch's
                # half-written files must never be renamed into place by another.
                import tempfile  # here, as shutil below: a status never needs them

                try:
                    self._staging = tempfile.mkdtemp(
                        prefix=f"{_STAGING}{os.getpid()}-", dir=self._root
                    )
                except OSError as e:
                    raise storage_error(e, self.store.root) from e
            self._new_shards.add(top)
            return self._listed.setdefault(top, set())

    def _open_tmp(self, tmp: str) -> int:
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)

    def put_file(
        self, path: str | os.PathLike[str], oid: str, size: int, *, move: bool = False
    ) -> PutResult:
        tmp = self._claim(oid)
        if tmp is None:
            return PutResult(oid, size, added=False)
        try:
            if move and _rename_into(path, tmp):
                os.chmod(tmp, 0o444)
                return PutResult(oid, size, added=True)
            try:
                fd, direct = open_for_copy(tmp, size)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
                fd, direct = open_for_copy(tmp, size)
            try:
                digest, copied = copy_hashing(path, fd, direct)
            finally:
                os.close(fd)
        except OSError as e:
            self._forget(oid, tmp)
            raise storage_error(e, self.store.root) from e
        if digest != oid:
            self._forget(oid, tmp)
            raise InputDataError(
                f"{os.fspath(path)} changed while it was being added",
                hint="add it again once nothing else is writing to it",
            )
        return PutResult(oid, copied, added=True)

    def _forget(self, oid: str, tmp: str) -> None:
        """Drop the blob ``oid`` whose write to ``tmp`` failed."""
        _unlink(tmp)
        with self._lock:
            self._pending.pop(oid, None)

    def put_bytes(self, data: bytes, oid: str | None = None) -> PutResult:
        oid = oid or hash_bytes(data)
        tmp = self._claim(oid)
        if tmp is None:
            return PutResult(oid, len(data), added=False)
        try:
            fd = self._open_tmp(tmp)
            try:
                write_all(fd, memoryview(data))
            finally:
                os.close(fd)
        except OSError as e:
            self._forget(oid, tmp)
            raise storage_error(e, self.store.root) from e
        return PutResult(oid, len(data), added=True)

    def commit(self) -> None:
        if self._closed:
            return
        if not self._pending:
            self.abort()  # nothing to place (a staging folder may be there, empty)
            return
        self._closed = True
        root = self._root
        try:
            syncfs(self.store.root)
            # Whether a blob was staged is read off its path: a shard can hold blobs of
            # both kinds when another batch made it while this one was deciding.
            staged = f"{self._staging}/" if self._staging else None
            staged_shards: set[str] = set()
            by_shard: dict[str, list[tuple[str, str]]] = {}
            for oid, tmp in self._pending.items():
                top = oid[:2]
                if staged and tmp.startswith(staged):
                    staged_shards.add(top)
                else:
                    by_shard.setdefault(top, []).append((tmp, f"{root}/{top}/{oid[2:]}"))
            groups = list(by_shard.values())
            if len(self._pending) < 256:
                for group in groups:
                    _rename_all(group)
            else:
                from concurrent.futures import ThreadPoolExecutor

                # Renames in different shard folders take different directory locks.
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(_rename_all, groups))
            for top in sorted(staged_shards):
                _place_shard(f"{staged}{top}", f"{root}/{top}")
            if self._staging is not None:
                os.rmdir(self._staging)
            syncfs(self.store.root)
        except OSError as e:
            self.abort()
            raise storage_error(e, self.store.root) from e

    def abort(self) -> None:
        self._closed = True
        for tmp in self._pending.values():
            _unlink(tmp)
        self._pending.clear()
        if self._staging is not None:
            import shutil

            shutil.rmtree(self._staging, ignore_errors=True)
