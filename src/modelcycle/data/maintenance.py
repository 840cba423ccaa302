"""Checking and cleaning the stores: ``fsck`` and ``gc``."""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelcycle.blobs import BlobStore
from modelcycle.core.errors import BlobCorruptedError, IntegrityError, NotFoundError
from modelcycle.core.progress import NullProgress, Progress
from modelcycle.data.manifest import load_manifest
from modelcycle.store.metadata import MetadataStore


@dataclass
class FsckReport:
    versions: int = 0
    blobs_checked: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    unreferenced: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "versions": self.versions,
            "blobs_checked": self.blobs_checked,
            "unreferenced_blobs": self.unreferenced,
            "problems": self.problems,
        }


@dataclass
class GcReport:
    removed: int = 0
    bytes_freed: int = 0
    kept: int = 0
    skipped_young: int = 0
    temp_files: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": self.removed,
            "bytes_freed": self.bytes_freed,
            "kept": self.kept,
            "skipped_young": self.skipped_young,
            "temp_files_removed": self.temp_files,
        }


def referenced_oids(store: MetadataStore, blobs: BlobStore) -> set[str]:
    """Every blob a live version needs (its manifest and everything the manifest names),
    and every artifact of a live run."""
    refs: set[str] = {oid for _, oid in store.live_artifacts()}
    for ref, manifest_oid in store.live_model_manifests():
        refs.add(manifest_oid)
        refs |= load_manifest(blobs.read_bytes(manifest_oid), ref).oids()
    for ref, _kind, manifest_oid in store.live_manifests():
        refs.add(manifest_oid)
        refs |= load_manifest(blobs.read_bytes(manifest_oid), ref).oids()
    return refs


def fsck(
    store: MetadataStore, blobs: BlobStore, *, verify: bool = True, progress: Progress | None = None
) -> FsckReport:
    """Check that every live version's blobs exist and (with ``verify``) match their hashes."""
    progress = progress or NullProgress()
    report = FsckReport()
    needed: dict[str, str] = {}
    live = store.live_manifests()
    for ref, _kind, manifest_oid in live:
        report.versions += 1
        try:
            manifest = load_manifest(blobs.read_bytes(manifest_oid), ref)
        except (NotFoundError, BlobCorruptedError, IntegrityError) as e:
            report.problems.append({"ref": ref, "blob": manifest_oid, "problem": e.message})
            continue
        for oid in manifest.oids():
            needed.setdefault(oid, ref)
    for where, oid in store.live_artifacts():
        needed.setdefault(oid, where)
    for ref, manifest_oid in store.live_model_manifests():
        needed.setdefault(manifest_oid, ref)
        try:
            for oid in load_manifest(blobs.read_bytes(manifest_oid), ref).oids():
                needed.setdefault(oid, ref)
        except (NotFoundError, BlobCorruptedError, IntegrityError) as e:
            report.problems.append({"ref": ref, "blob": manifest_oid, "problem": e.message})
    stored = set(blobs.iter_oids())
    progress.task("verifying blobs", total=len(needed))
    for oid, ref in sorted(needed.items()):
        if oid not in stored:
            report.problems.append({"ref": ref, "blob": oid, "problem": f"blob {oid} is missing"})
        elif verify:
            try:
                blobs.verify(oid)
            except BlobCorruptedError as e:
                report.problems.append({"ref": ref, "blob": oid, "problem": e.message})
        report.blobs_checked += 1
        progress.advance()
    manifests = {m for _, _, m in live}
    report.unreferenced = len(stored - set(needed) - manifests)
    return report


def gc(
    store: MetadataStore,
    blobs: BlobStore,
    *,
    dry_run: bool = False,
    grace_seconds: float = 3600.0,
    scratch_dir: Path | None = None,
) -> GcReport:
    """Remove blobs no live version references.

    Blobs younger than ``grace_seconds`` are kept: a concurrent ``add`` writes its blobs
    before it commits the version that references them. Leftover scratch folders of
    killed commands under ``scratch_dir`` are removed by the same rule.
    """
    from modelcycle.blobs.local import LocalBlobStore

    report = GcReport(dry_run=dry_run)
    keep = referenced_oids(store, blobs)
    now = time.time()
    for oid in list(blobs.iter_oids()):
        if oid in keep:
            report.kept += 1
            continue
        if grace_seconds > 0 and isinstance(blobs, LocalBlobStore):
            try:
                if now - blobs.path(oid).stat().st_mtime < grace_seconds:
                    report.skipped_young += 1
                    continue
            except FileNotFoundError:
                continue
        size = blobs.size(oid)
        if not dry_run:
            blobs.remove(oid)
        report.removed += 1
        report.bytes_freed += size
    leftovers: list[Path] = (
        list(blobs.iter_temp_files()) if isinstance(blobs, LocalBlobStore) else []
    )
    if scratch_dir is not None and scratch_dir.is_dir():
        leftovers += scratch_dir.iterdir()
    report.temp_files = _remove_stale(
        leftovers, now - grace_seconds if grace_seconds > 0 else None, dry_run
    )
    if not dry_run and (report.removed or report.temp_files):
        store.record_event("gc", blobs.url, report.to_dict())
    return report


def _last_change(path: Path) -> float:
    """When ``path`` last changed: for a folder, the latest of its own and its
    subfolders' times (a batch's staging folder gains files in its shard folders, which
    leaves the staging folder's own time alone)."""
    st = path.stat()
    if not stat_mod.S_ISDIR(st.st_mode):
        return st.st_mtime
    latest = st.st_mtime
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                latest = max(latest, entry.stat(follow_symlinks=False).st_mtime)
    return latest


def _remove_stale(paths: list[Path], older_than: float | None, dry_run: bool) -> int:
    """Remove the files and folders in ``paths`` last modified before ``older_than``
    (all of them when None); returns how many were (or would be) removed."""
    count = 0
    for path in paths:
        try:
            if older_than is not None and _last_change(path) >= older_than:
                continue
        except FileNotFoundError:
            continue
        if not dry_run:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        count += 1
    return count
