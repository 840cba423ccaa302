"""Folders of files: scanning, hashing with the stat cache, storing, and comparing.

Many files are hashed and stored as a pipeline: the calling thread reads and hashes the
small ones, and a few threads write them to the blob store and handle the big ones.
Reading a small file from the page cache takes a few microseconds between system calls;
spread over many threads, those calls would spend more time passing the GIL around
than working. Writing new files, which may wait on the disk, overlaps well.
"""

from __future__ import annotations

import os
import sqlite3
import stat as stat_mod
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

from modelcycle.blobs import BlobBatch, BlobStore
from modelcycle.core.errors import InputDataError, NotFoundError
from modelcycle.core.hashing import hash_bytes, hash_file
from modelcycle.core.progress import NullProgress, Progress
from modelcycle.core.statcache import Entry, StatCache, StatKey
from modelcycle.data.formats import add_step
from modelcycle.data.manifest import FileEntry, FileManifest

# Files at most this big are read once into memory, hashed and written from that copy.
_SMALL = 16 << 20
# Files at most this big are read and hashed by the calling thread of a pipeline; bigger
# ones go to the pool whole (reading and hashing them releases the GIL for long enough
# that several threads gain).
_INLINE = 256 << 10
# A pipeline's chunk of files read ahead: at most this many files and bytes.
_CHUNK_FILES = 64
_CHUNK_BYTES = 8 << 20
# A file whose modification time is this close to (or after) the moment hashing started
# could change again within the same timestamp tick, unseen by its stat, so its hash is
# not cached (the "racy git" problem). The tick of filesystems that keep nanoseconds is
# the kernel's clock tick (at most 10 ms on Linux); mtimes in whole seconds mean a
# filesystem that keeps seconds (FAT keeps every other second). On a network share the
# mtime comes from the server's clock: a server running behind this machine by more than
# the margin eats into it.
_RACY_NS = 100_000_000
_RACY_WHOLE_SECONDS_NS = 2_000_000_000
_SKIP_DIRS = {".git", ".dvc", ".modelcycle", "__pycache__"}
# Fewer files than this to hash or store are done on the calling thread: starting a
# pool costs more than it saves (a re-add after a few changes).
_POOL_MIN_FILES = 256


class ScannedFile(NamedTuple):
    """A regular file found by `scan` (a named tuple: a folder may hold millions)."""

    rel: str
    abspath: str
    key: StatKey  # size, mtime in nanoseconds, inode
    mode: int


def scan(root: Path) -> list[ScannedFile]:
    """Every regular file under ``root`` (or ``root`` itself), sorted by relative path."""
    if _is_file(root):
        return [_file_itself(root)]
    out: list[ScannedFile] = []
    for files in _walk(root):
        out += files
    out.sort(key=_BY_REL)  # the listings come sorted per folder: this finds runs
    return out


def _is_file(root: Path) -> bool:
    if not root.exists():
        raise NotFoundError(f"{root} does not exist", hint="check the path")
    return root.is_file()


def _file_itself(root: Path) -> ScannedFile:
    """``root``, a file (or a link to one, which keeps its own name)."""
    st = root.stat()
    key = (st.st_size, st.st_mtime_ns, st.st_ino)
    return ScannedFile(root.name, str(root.resolve()), key, _mode(st.st_mode))


def _mode(st_mode: int) -> int:
    return 0o755 if st_mode & _S_IXUSR else 0o644


def _walk(root: Path) -> Iterator[list[ScannedFile]]:
    """The regular files of every folder under the folder ``root``, a list per folder,
    the root's first. Tool folders (.git, .modelcycle, …) and symbolic links to folders
    are skipped; links to files are followed."""
    stack = [(str(root.resolve()).rstrip("/") + "/", "")]
    while stack:
        prefix, rel = stack.pop()
        try:
            files, folders = _list_folder(prefix, rel, ScannedFile)
        except PermissionError as e:
            raise InputDataError(
                f"cannot read folder {prefix}: {e.strerror}",
                hint="fix its permissions or leave it out",
            ) from e
        yield files
        stack += [(f"{prefix}{n}/", f"{rel}{n}/") for n in folders if n not in _SKIP_DIRS]


def _scandir(
    prefix: str, rel: str, file_type: type[ScannedFile], /
) -> tuple[list[ScannedFile], list[str]]:
    """The regular files of the folder ``prefix`` (ending in "/"; links to files
    followed) as ``file_type`` records whose paths are ``rel`` and ``prefix`` joined to
    their names, and the names of its subfolders (links to folders left out), as
    `modelcycle.core._native.scan_folder` lists them."""
    # tuple.__new__ makes the named tuples without the Python-level call their
    # constructor is: a quarter of the time around 20,000 stat calls.
    new = tuple.__new__
    files: list[ScannedFile] = []
    folders: list[str] = []
    with os.scandir(prefix) as entries:
        for entry in entries:
            if entry.is_file():  # a file or a link to one (the common case first)
                st, name = entry.stat(), entry.name
                key = (st.st_size, st.st_mtime_ns, st.st_ino)
                files.append(new(file_type, (rel + name, prefix + name, key, _mode(st.st_mode))))
            elif entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
    return files, folders


try:
    # The same listing made in C, with the GIL released and the stat calls on two
    # threads: half the time for a folder of 20,000 files (built at install where a C
    # compiler is: hatch_build.py).
    from modelcycle.core._native import scan_folder as _list_folder
except ImportError:
    _list_folder = _scandir


_S_IXUSR = stat_mod.S_IXUSR
_BY_REL = itemgetter(0)


@dataclass
class IngestResult:
    manifest: FileManifest
    bytes_added: int
    bytes_deduplicated: int
    files_added: int
    files_hashed: int


def ingest(
    files: list[ScannedFile],
    batch: BlobBatch,
    cache: StatCache | None,
    known_oids: set[str],
    progress: Progress | None = None,
    workers: int | None = None,
    root: str | None = None,
    whole_folder: bool = False,
) -> IngestResult:
    """Hash what the stat cache does not know, store what the blob store lacks.

    ``known_oids`` are blobs referenced by a live version (so certainly stored); they are
    neither checked nor written again. ``root`` is a folder holding every file (the
    stat cache is loaded for it); by default the files' common path. ``whole_folder``:
    the files are all there is under ``root``, so the cache forgets the paths of others.
    """
    progress = progress or NullProgress()
    root = (root or _common_root(files)).rstrip("/")
    # The cache is keyed by paths relative to ``root``: the files' own relative paths
    # when ``root`` is the folder they were scanned from (the usual case).
    prefix = root + "/"
    cut = len(prefix)
    cached = cache.load(root or "/") if cache and files else {}
    # One pass makes the entry of every file whose stat the cache knows; the entries of
    # the others are made once they are hashed.
    # Without a cache nothing is keyed by path: no file needs to be under ``root``.
    matched = _match(files, cached, prefix if cache else "", known_oids, FileEntry)
    if matched is None:
        # ``root`` no longer holds the files (a symbolic link on the way was changed
        # between the scan and now): keys cut from their paths would be wrong.
        _warn("%s moved while it was being added; hashing every file", root)
        cache, cached = None, {}
        matched = _match(files, cached, "", known_oids, FileEntry)
        assert matched is not None
    # todo: files to hash (and store unless known); unstored: files whose hash the cache
    # knows but whose blob may not be stored; named: files whose path the cache knows,
    # with the same stat or not.
    entries, todo, unstored, named = matched
    # Paths the cache knows that are no longer here (rare: compared only then).
    gone: set[str] = set()
    if whole_folder and named < len(cached):
        gone = set(cached).difference(f.abspath[cut:] for f in files)

    def store_known(i: int) -> int | None:
        """Store file ``i`` whose oid is known; the bytes added, None if it was stored."""
        f, entry = files[i], entries[i]
        assert entry is not None
        if entry.oid in known_oids:
            return None
        result = batch.put_file(f.abspath, entry.oid, f.key[0])
        return result.size if result.added else None

    def hash_small(i: int) -> bytes:
        """Read and hash file ``i`` (at most ``_SMALL`` bytes), making its entry."""
        f = files[i]
        with _reading(f.abspath):
            data = _read_small(f.abspath, f.key[0])
        entries[i] = FileEntry(f.rel, hash_bytes(data), len(data), f.mode)
        return data

    def store_small(i: int, data: bytes) -> int | None:
        """Store file ``i``, hashed by `hash_small`; the bytes added, None if stored."""
        entry = entries[i]
        assert entry is not None
        if entry.oid in known_oids:
            return None
        result = batch.put_bytes(data, entry.oid)
        return result.size if result.added else None

    def hash_and_store(i: int) -> int | None:
        f = files[i]
        if f.key[0] <= _SMALL:
            return store_small(i, hash_small(i))
        with _reading(f.abspath):
            oid = hash_file(f.abspath, f.key[0])
        entries[i] = FileEntry(f.rel, oid, f.key[0], f.mode)
        return store_known(i)

    progress.task("hashing and storing files", total=len(files))
    started_ns = time.time_ns()  # every file is read after this

    def done(sizes: list[int | None]) -> tuple[int, int, int]:
        """(files done, bytes added, files added) of one chunk."""
        added = [s for s in sizes if s is not None]
        return len(sizes), sum(added), len(added)

    def run_all() -> Generator[tuple[int, int, int], None, None]:
        n_workers = min(workers or min(4, os.cpu_count() or 2), len(todo) + len(unstored))
        if n_workers < 2 or len(todo) + len(unstored) < _POOL_MIN_FILES:
            for fn, idx in ((hash_and_store, todo), (store_known, unstored)):
                for chunk in _chunks(idx, _CHUNK_FILES):
                    yield done([fn(i) for i in chunk])
            return
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        def store_chunk(inline: list[tuple[int, bytes]], rest: list[int]) -> tuple[int, int, int]:
            sizes = [store_small(i, data) for i, data in inline]
            return done(sizes + [hash_and_store(i) for i in rest])

        def known_chunk(idx: list[int]) -> tuple[int, int, int]:
            return done([store_known(i) for i in idx])

        def submitted(pool: ThreadPoolExecutor) -> Iterator[Future[tuple[int, int, int]]]:
            for chunk in _chunks_by_size(todo, files):
                inline = [(i, hash_small(i)) for i in chunk if files[i].key[0] <= _INLINE]
                rest = [i for i in chunk if files[i].key[0] > _INLINE]
                yield pool.submit(store_chunk, inline, rest)
            for chunk in _chunks(unstored, _CHUNK_FILES):
                yield pool.submit(known_chunk, chunk)

        # A bounded window of chunks in flight: read ahead, never the whole folder.
        window: deque[Future[tuple[int, int, int]]] = deque()
        pool = ThreadPoolExecutor(n_workers)
        try:
            for future in submitted(pool):
                window.append(future)
                if len(window) > 2 * n_workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        except BaseException:
            # An error, an interrupt or the caller giving up: what has not started never
            # does, and what has is waited for, so that nothing writes after an abort.
            pool.shutdown(cancel_futures=True)
            raise
        finally:
            pool.shutdown()

    bytes_added = files_added = 0
    with closing(run_all()) as results:
        for n, nbytes, nfiles in results:
            bytes_added += nbytes
            files_added += nfiles
            progress.advance(n)
    progress.advance(len(files) - len(todo) - len(unstored))

    if cache is not None and (todo or gone):
        # The files just hashed, unless changed too recently to trust their stat (their
        # old entries go), and the paths of files that are gone.
        fresh = [i for i in todo if _racy(files[i].key[1], started_ns)]
        skip = set(fresh)
        stale = [rel for i in fresh if (rel := files[i].abspath[cut:]) in cached]
        try:
            cache.update(
                root or "/",
                (
                    (files[i].abspath[cut:], files[i].key, entry.oid)
                    for i in todo
                    if i not in skip and (entry := entries[i]) is not None
                ),
                removed=[*gone, *stale],
            )
        except (sqlite3.Error, OSError) as e:  # the cache is only a shortcut
            _warn("could not update the stat cache: %s", e)
    manifest = FileManifest(tuple([e for e in entries if e is not None]))
    total = manifest.size
    return IngestResult(manifest, bytes_added, total - bytes_added, files_added, len(todo))


@dataclass
class StagedFolder:
    """A folder hashed and stored (`stage_folder`), ready for its version record."""

    source: Path
    ingest: IngestResult
    manifest_oid: str
    unchanged: bool  # equal to the latest version: nothing to record

    @property
    def step(self) -> dict[str, str]:
        """The version's ``step``: what made it."""
        return add_step(self.source, "files")


def stage_folder(
    src: Path,
    blobs: BlobStore,
    cache_path: Path,
    *,
    known_oids: set[str],
    latest_hash: str | None,
    progress: Progress,
) -> StagedFolder:
    """Hash and store the files at ``src`` and their manifest, as one durable blob batch.

    ``known_oids`` are the blobs of the latest version (certainly stored) and
    ``latest_hash`` its content hash: content equal to it stores no manifest. The caller
    records the version afterwards, so a crash in between leaves only unreferenced blobs.
    """
    progress.task(f"scanning {src}")
    # Resolved once: the stat cache's keys are cut from paths under this folder.
    resolved = src.resolve()
    is_dir = resolved.is_dir()
    scanned = scan(resolved if is_dir else src)  # a link to a file keeps its own name
    if not scanned:
        raise InputDataError(f"{src} holds no files", hint="add a folder with at least one file")
    cache = StatCache(cache_path)
    try:
        with blobs.batch() as batch:
            root = str(resolved if is_dir else resolved.parent)
            result = ingest(
                scanned, batch, cache, known_oids, progress, root=root, whole_folder=is_dir
            )
            manifest_bytes = result.manifest.to_bytes()
            manifest_oid = hash_bytes(manifest_bytes)
            if manifest_oid == latest_hash:
                return StagedFolder(src, result, manifest_oid, unchanged=True)
            batch.put_bytes(manifest_bytes, manifest_oid)
    finally:
        cache.close()
    return StagedFolder(src, result, manifest_oid, unchanged=False)


Matched = tuple[list[FileEntry | None], list[int], list[int], int]


def _match_cached(
    files: list[ScannedFile],
    cached: dict[str, Entry],
    prefix: str,
    known_oids: set[str],
    entry_type: type[FileEntry],
) -> Matched | None:
    """The stat cache's verdict on each file: (its entry, or None when it must be hashed;
    the files to hash; the files whose blob may not be stored; how many paths the cache
    knows), or None if a file is not under ``prefix``. `modelcycle.core._native` has the
    same in C, three times as fast."""
    if not all(f.abspath.startswith(prefix) for f in files):
        return None
    cut = len(prefix)
    entries: list[FileEntry | None] = []
    todo: list[int] = []
    unstored: list[int] = []
    named = 0
    new, get, add = tuple.__new__, cached.get, entries.append  # (as in `scan`)
    for i, (rel, abspath, key, mode) in enumerate(files):
        hit = get(abspath[cut:])
        if hit is not None and hit[0] == key:
            oid = hit[1]
            add(new(entry_type, (rel, oid, key[0], mode)))
            if oid not in known_oids:
                unstored.append(i)
            named += 1
        else:
            add(None)
            todo.append(i)
            named += hit is not None
    return entries, todo, unstored, named


try:
    from modelcycle.core._native import match_cached as _match
except ImportError:
    _match = _match_cached


def _warn(message: str, *args: object) -> None:
    import logging  # here: a warning is rare, and importing logging costs every add 3 ms

    logging.getLogger(__name__).warning(message, *args)


def _racy(mtime_ns: int, read_after_ns: int) -> bool:
    """Whether a file last modified at ``mtime_ns`` and read after ``read_after_ns`` could
    change again without its stat showing it."""
    coarse = mtime_ns % 1_000_000_000 == 0
    return read_after_ns - mtime_ns <= (_RACY_WHOLE_SECONDS_NS if coarse else _RACY_NS)


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for start in range(0, len(items), n):
        yield items[start : start + n]


def _chunks_by_size(items: list[int], files: list[ScannedFile]) -> Iterator[list[int]]:
    """``items`` in chunks of at most ``_CHUNK_FILES`` files and, counting the files read
    inline only, about ``_CHUNK_BYTES``."""
    chunk: list[int] = []
    size = 0
    for i in items:
        chunk.append(i)
        if (n := files[i].key[0]) <= _INLINE:
            size += n
        if len(chunk) == _CHUNK_FILES or size >= _CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _read_small(path: str, size: int) -> bytes:
    """The bytes of the file at ``path``, ``size`` long when it was scanned, in three
    system calls (``open()`` and ``read()`` make eight, each one a chance for another
    thread to take the GIL)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, size + 1)
        if len(data) != size:
            # It grew or shrank since it was scanned, or the filesystem (FUSE, a network
            # share) returned less than asked: read on to the end.
            parts = [data]
            while part := os.read(fd, 1 << 20):
                parts.append(part)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


@contextmanager
def _reading(path: str) -> Iterator[None]:
    """Errors reading a file being added, said as the user's problem they are."""
    try:
        yield
    except FileNotFoundError as e:
        raise InputDataError(
            f"{path} disappeared while it was being added",
            hint="add the folder again once nothing else is changing it",
        ) from e
    except PermissionError as e:
        raise InputDataError(
            f"cannot read {path}: {e.strerror}",
            hint="fix its permissions or remove it from the folder",
        ) from e


def _common_root(files: Iterable[ScannedFile]) -> str:
    """The deepest folder holding every file."""
    return os.path.commonpath([os.path.dirname(f.abspath) for f in files]) if files else "/"


def _cached_hashes(path: Path, cache_path: Path) -> tuple[dict[str, Entry], int]:
    """The stat cache's entries for the files at ``path``, keyed by ``abspath[cut:]``
    (the files' relative paths, for a folder), and ``cut``."""
    cache = StatCache(cache_path)
    try:
        root = str(path.resolve() if path.is_dir() else path.resolve().parent).rstrip("/")
        return cache.load(root or "/"), len(root) + 1
    finally:
        cache.close()


def current_manifest(path: Path, cache_path: Path) -> FileManifest:
    """The manifest the folder (or file) at ``path`` would get now, without storing
    anything: hashes come from the stat cache where the stat still matches."""
    scanned = scan(path)
    cached, cut = _cached_hashes(path, cache_path)
    entries = []
    for rel, abspath, key, mode in scanned:
        hit = cached.get(abspath[cut:])
        oid = hit[1] if hit is not None and hit[0] == key else hash_file(abspath, key[0])
        entries.append(FileEntry(rel, oid, key[0], mode))
    return FileManifest(tuple(entries))


def folder_changes(path: Path, old: dict[str, str], cache_path: Path) -> FileChanges:
    """How the folder (or file) at ``path`` differs from the manifest whose path -> oid
    index is ``old`` (`modelcycle.data.manifest.file_index`); nothing is stored.

    Hashes come from the stat cache where the stat still matches. This runs on every
    ``dataset status``, so it walks the folder once and makes no per-file records
    beyond the path -> oid index it compares.
    """
    if _is_file(path):
        one = current_manifest(path, cache_path)
        return compare_index(old, {e.path: e.oid for e in one.files})
    cached, cut = _cached_hashes(path, cache_path)
    get = cached.get
    new: dict[str, str] = {}
    for files in _walk(path):
        for rel, abspath, key, _mode in files:
            hit = get(abspath[cut:])
            new[rel] = hit[1] if hit is not None and hit[0] == key else hash_file(abspath, key[0])
    return compare_index(old, new)


@dataclass
class FileChanges:
    added: list[str]
    removed: list[str]
    modified: list[str]
    renamed: list[tuple[str, str]]

    @property
    def clean(self) -> bool:
        return not (self.added or self.removed or self.modified or self.renamed)

    def to_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "removed": self.removed,
            "modified": self.modified,
            "renamed": [{"from": a, "to": b} for a, b in self.renamed],
        }


def compare(old: FileManifest, new: FileManifest) -> FileChanges:
    """Added/removed/modified files; a removed and an added file with equal content is a rename."""
    return compare_index({f.path: f.oid for f in old.files}, {f.path: f.oid for f in new.files})


def compare_index(a: dict[str, str], b: dict[str, str]) -> FileChanges:
    """`compare` on path -> oid indexes."""
    if a == b:
        return FileChanges([], [], [], [])
    removed = sorted(a.keys() - b.keys())
    added = sorted(b.keys() - a.keys())
    modified = sorted(p for p in a.keys() & b.keys() if a[p] != b[p])
    removed_by_oid: dict[str, list[str]] = {}
    for p in removed:
        removed_by_oid.setdefault(a[p], []).append(p)
    renamed: list[tuple[str, str]] = []
    still_added = []
    for p in added:
        sources = removed_by_oid.get(b[p])
        if sources:
            renamed.append((sources.pop(0), p))
        else:
            still_added.append(p)
    renamed_from = {src for src, _ in renamed}
    return FileChanges(
        still_added, [p for p in removed if p not in renamed_from], modified, renamed
    )
