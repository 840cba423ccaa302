"""Folders of files: scanning, hashing with the stat cache, storing, and comparing.

Hashing and storing run on a thread pool: BLAKE3 and file I/O release the GIL, so a
folder of many small files uses every core.
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelcycle.blobs import BlobBatch
from modelcycle.core.errors import InputDataError, NotFoundError
from modelcycle.core.hashing import hash_bytes, hash_file
from modelcycle.core.progress import NullProgress, Progress
from modelcycle.core.statcache import StatCache, StatKey
from modelcycle.data.manifest import FileEntry, FileManifest

# Files at most this big are read once into memory, hashed and written from that copy.
_SMALL = 16 << 20
# Entries younger than this may still change within the same mtime tick, so their hash
# is not cached (the "racy git" problem).
_RACY_SECONDS = 2.0
_SKIP_DIRS = {".git", ".dvc", ".modelcycle", "__pycache__"}


@dataclass(frozen=True, slots=True)
class ScannedFile:
    rel: str
    abspath: str
    key: StatKey
    mode: int
    mtime: float


def scan(root: Path) -> list[ScannedFile]:
    """Every regular file under ``root`` (or ``root`` itself), sorted by relative path."""
    if not root.exists():
        raise NotFoundError(f"{root} does not exist", hint="check the path")
    if root.is_file():
        st = root.stat()
        return [_scanned(root.name, str(root.resolve()), st)]
    out: list[ScannedFile] = []
    base = str(root.resolve())
    stack = [(base, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except PermissionError as e:
            raise InputDataError(
                f"cannot read folder {folder}: {e.strerror}",
                hint="fix its permissions or leave it out",
            ) from e
        for entry in entries:
            name = rel + entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIP_DIRS:
                    stack.append((entry.path, name + "/"))
            elif entry.is_file():
                out.append(_scanned(name, entry.path, entry.stat()))
    out.sort(key=lambda f: f.rel)
    return out


def _scanned(rel: str, abspath: str, st: os.stat_result) -> ScannedFile:
    mode = 0o755 if st.st_mode & stat_mod.S_IXUSR else 0o644
    return ScannedFile(rel, abspath, (st.st_size, st.st_mtime_ns, st.st_ino), mode, st.st_mtime)


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
) -> IngestResult:
    """Hash what the stat cache does not know, store what the blob store lacks.

    ``known_oids`` are blobs referenced by a live version (so certainly stored); they are
    neither checked nor written again. ``root`` is a folder holding every file (the
    stat cache is loaded for it); by default the files' common path.
    """
    progress = progress or NullProgress()
    cached = cache.load(root or _common_root(files)) if cache and files else {}
    oids: list[str | None] = [None] * len(files)
    todo: list[int] = []
    for i, f in enumerate(files):
        hit = cached.get(f.abspath)
        if hit is not None and hit[0] == f.key:
            oids[i] = hit[1]
        else:
            todo.append(i)

    def store_known(i: int) -> int | None:
        """Store file ``i`` whose oid is known; the bytes added, None if it was stored."""
        f = files[i]
        oid = oids[i]
        assert oid is not None
        if oid in known_oids:
            return None
        result = batch.put_file(f.abspath, oid, f.key[0])
        return result.size if result.added else None

    def hash_and_store(i: int) -> int | None:
        f = files[i]
        size = f.key[0]
        try:
            if size <= _SMALL:
                with open(f.abspath, "rb") as fh:
                    data = fh.read()
                oid = hash_bytes(data)
                oids[i] = oid
                if oid in known_oids:
                    return None
                result = batch.put_bytes(data, oid)
                return result.size if result.added else None
            oids[i] = hash_file(f.abspath, size)
            return store_known(i)
        except FileNotFoundError as e:
            raise InputDataError(
                f"{f.abspath} disappeared while it was being added",
                hint="add the folder again once nothing else is changing it",
            ) from e
        except PermissionError as e:
            raise InputDataError(
                f"cannot read {f.abspath}: {e.strerror}",
                hint="fix its permissions or remove it from the folder",
            ) from e

    progress.task("hashing and storing files", total=len(files))
    cached_idx = [i for i in range(len(files)) if oids[i] is not None and oids[i] not in known_oids]
    jobs: list[tuple[str, list[int]]] = [("h", c) for c in _chunks(todo, 64)]
    jobs += [("k", c) for c in _chunks(cached_idx, 64)]

    def run(job: tuple[str, list[int]]) -> tuple[int, int, int]:
        """(files done, bytes added, files added) of one chunk."""
        kind, idx = job
        fn = hash_and_store if kind == "h" else store_known
        sizes = [fn(i) for i in idx]
        added = [s for s in sizes if s is not None]
        return len(idx), sum(added), len(added)

    bytes_added = files_added = 0
    n_workers = workers or min(4, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(n_workers) as pool:
        for n, nbytes, nfiles in pool.map(run, jobs):
            bytes_added += nbytes
            files_added += nfiles
            progress.advance(n)
    progress.advance(len(files) - len(todo) - len(cached_idx))

    if cache is not None and todo:
        now = time.time()
        cache.update(
            (files[i].abspath, files[i].key, oids[i])  # type: ignore[misc]
            for i in todo
            if now - files[i].mtime > _RACY_SECONDS
        )
    entries = tuple(
        FileEntry(f.rel, oid, f.key[0], f.mode) for f, oid in zip(files, oids, strict=True) if oid
    )
    manifest = FileManifest(entries)
    total = manifest.size
    return IngestResult(manifest, bytes_added, total - bytes_added, files_added, len(todo))


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for start in range(0, len(items), n):
        yield items[start : start + n]


def _common_root(files: Iterable[ScannedFile]) -> str:
    return os.path.commonpath([f.abspath for f in files]) if files else "/"


def current_manifest(path: Path, cache_path: Path) -> FileManifest:
    """The manifest the folder (or file) at ``path`` would get now, without storing
    anything: hashes come from the stat cache where the stat still matches."""
    scanned = scan(path)
    cache = StatCache(cache_path)
    try:
        root = path.resolve() if path.is_dir() else path.resolve().parent
        cached = cache.load(str(root))
    finally:
        cache.close()
    entries = []
    for f in scanned:
        hit = cached.get(f.abspath)
        oid = hit[1] if hit and hit[0] == f.key else hash_file(f.abspath, f.key[0])
        entries.append(FileEntry(f.rel, oid, f.key[0], f.mode))
    return FileManifest(tuple(entries))


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
    a, b = old.by_path(), new.by_path()
    removed = sorted(set(a) - set(b))
    added = sorted(set(b) - set(a))
    modified = sorted(p for p in set(a) & set(b) if a[p].oid != b[p].oid)
    removed_by_oid: dict[str, list[str]] = {}
    for p in removed:
        removed_by_oid.setdefault(a[p].oid, []).append(p)
    renamed: list[tuple[str, str]] = []
    still_added = []
    for p in added:
        sources = removed_by_oid.get(b[p].oid)
        if sources:
            renamed.append((sources.pop(0), p))
        else:
            still_added.append(p)
    renamed_from = {src for src, _ in renamed}
    return FileChanges(
        still_added, [p for p in removed if p not in renamed_from], modified, renamed
    )
