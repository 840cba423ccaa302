"""Datasets: versions added from files, made by recipes and splits, compared, checked.

`DatasetService` is the domain service behind ``Workspace.datasets``. It receives its
metadata store, blob store and local state folder; it opens nothing itself.

Every new version is written in the same order: blobs first (made durable as one
batch), then one metadata transaction that inserts the version, its lineage and its
event. A crash in between leaves only unreferenced blobs, which ``gc`` removes.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle import __version__
from modelcycle.blobs import BlobStore
from modelcycle.core.errors import (
    ConflictError,
    NotFoundError,
    RefError,
    UsageError,
)
from modelcycle.core.hashing import ALGORITHM, hash_bytes, hash_file, hash_text
from modelcycle.core.progress import NullProgress, Progress
from modelcycle.core.statcache import stat_cache_path
from modelcycle.data import files as files_mod
from modelcycle.data.manifest import (
    FileEntry,
    FileManifest,
    Manifest,
    Part,
    TableManifest,
    file_index,
    file_oids,
    load_manifest,
)
from modelcycle.data.refs import HASH_PREFIX_RE, Ref, check_name, check_tag, parse_ref
from modelcycle.store.metadata import DatasetRecord, MetadataStore, NewVersion, VersionRecord

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

    from modelcycle.data.recipes import Recipe


@dataclass
class AddResult:
    """What ``add`` did: the version, whether it is new, and the bytes it stored."""

    version: VersionRecord
    created: bool
    bytes_added: int = 0
    bytes_deduplicated: int = 0
    files_added: int = 0
    files_hashed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.version.ref,
            "version": self.version.version,
            "content_hash": self.version.content_hash,
            "created": self.created,
            "bytes_added": self.bytes_added,
            "bytes_deduplicated": self.bytes_deduplicated,
            "files_added": self.files_added,
            "files_hashed": self.files_hashed,
        }


@dataclass
class ValidationReport:
    ref: str
    rules: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "ok": self.ok, "rules": self.rules, "failures": self.failures}


@dataclass
class LineageNode:
    version: VersionRecord
    role: str | None
    parents: list[LineageNode]

    def to_dict(self) -> dict[str, Any]:
        step = self.version.step
        return {
            "ref": self.version.ref,
            "content_hash": self.version.content_hash,
            "role": self.role,
            "step": {
                k: v
                for k, v in step.items()
                if k
                in ("op", "source", "format", "recipe_hash", "recipe", "seed", "ratios", "part")
            },
            "deleted": self.version.deleted_at is not None,
            "parents": [p.to_dict() for p in self.parents],
        }


class DatasetService:
    def __init__(self, store: MetadataStore, blobs: BlobStore, state_dir: Path) -> None:
        self.store = store
        self.blobs = blobs
        self.state_dir = state_dir

    # -- helpers ----------------------------------------------------------------------
    @contextmanager
    def _scratch(self) -> Iterator[Path]:
        base = self.state_dir / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=base))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _dataset(self, name: str) -> DatasetRecord:
        ds = self.store.get_dataset(name)
        if ds is None:
            names = [d.name for d, n, _ in self.store.list_datasets() if n]
            from modelcycle.data.yamlio import suggest

            raise NotFoundError(
                f"no dataset named {name!r}{suggest(name, names)}",
                hint="`modelcycle dataset list` shows the datasets",
            )
        return ds

    def resolve(self, ref: str | Ref) -> VersionRecord:
        """The version a ref names; raises NotFoundError / RefError."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        ds = self._dataset(r.name)
        if r.selector is None:
            versions = self.store.versions(ds.id)
            if not versions:
                raise NotFoundError(
                    f"dataset {r.name!r} has no versions left",
                    hint="add one with `modelcycle dataset add`",
                )
            return versions[-1]
        if r.number is not None:
            v = self.store.version_by_number(ds.id, r.number)
            if v is None or v.deleted_at is not None:
                state = "was deleted" if v else "does not exist"
                raise NotFoundError(
                    f"{r} {state}",
                    hint=f"`modelcycle dataset versions {r.name}` lists its versions",
                )
            return v
        tag_target = self.store.tag_target(ds.id, r.selector)
        if tag_target is not None:
            v = self.store.version_by_id(tag_target)
            assert v is not None
            return v
        if HASH_PREFIX_RE.fullmatch(r.selector):
            matches = [
                v
                for v in self.store.versions_by_hash_prefix(ds.id, r.selector)
                if v.deleted_at is None
            ]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise RefError(
                    f"{r} is ambiguous: {len(matches)} versions have hashes starting with it",
                    hint="give more characters of the hash, or the version number",
                )
        raise NotFoundError(
            f"{r}: no version, tag or hash prefix {r.selector!r} in {r.name!r}",
            hint=f"`modelcycle dataset versions {r.name}` lists versions and tags",
        )

    def manifest(self, version: VersionRecord) -> Manifest:
        return load_manifest(self.blobs.read_bytes(version.manifest_oid), version.ref)

    def _file_index(self, version: VersionRecord) -> dict[str, str]:
        """path -> oid of a file version (cheaper than its whole manifest)."""
        return file_index(self.blobs.read_bytes(version.manifest_oid), version.ref)

    def _create(
        self,
        new: NewVersion,
        manifest: Manifest,
        batch_files: list[tuple[Path, Part]] | None = None,
    ) -> VersionRecord:
        with self.blobs.batch() as batch:
            for path, part in batch_files or []:
                batch.put_file(path, part.oid, part.size, move=True)
            batch.put_bytes(manifest.to_bytes(), new.manifest_oid)
        return self.store.create_version(new)

    def latest(self, name: str) -> VersionRecord | None:
        """The newest live version of ``name``, or None (no error when there is none)."""
        ds = self.store.get_dataset(name)
        if ds is None:
            return None
        versions = self.store.versions(ds.id)
        return versions[-1] if versions else None

    # -- add --------------------------------------------------------------------------
    def add(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        message: str | None = None,
        format: str | None = None,
        progress: Progress | None = None,
        source: str | None = None,
    ) -> AddResult:
        """Add the file or folder at ``path`` as the next version of dataset ``name``.

        ``source`` says where the data came from when ``path`` is a scratch file (it
        replaces the path in the version's lineage).

        Tables (CSV, TSV, Parquet, JSON Lines, JSON, Excel) are stored as Parquet with a
        profile; folders and other files become file datasets. Content equal to the
        latest version adds nothing and returns that version.
        """
        check_name(name)
        src = Path(path).expanduser()
        if not src.exists():
            raise NotFoundError(f"{src} does not exist", hint="check the path you are adding")
        from modelcycle.data.formats import detect_format

        fmt = detect_format(src, format)
        if fmt != "files" and src.is_dir():
            raise UsageError(
                f"{src} is a folder, not a {fmt} file",
                hint="drop --format to add the folder as a file dataset",
            )
        progress = progress or NullProgress()
        if fmt == "files":
            return self._add_files(name, src, message, progress)
        return self._add_table(name, src, fmt, message, progress, source)

    def _add_files(
        self, name: str, src: Path, message: str | None, progress: Progress
    ) -> AddResult:
        latest = self.latest(name)
        known: set[str] = set()
        if latest is not None and latest.kind == "files":
            known = file_oids(self.blobs.read_bytes(latest.manifest_oid), latest.ref)
        staged = files_mod.stage_folder(
            src,
            self.blobs,
            stat_cache_path(self.state_dir),
            known_oids=known,
            latest_hash=latest.content_hash if latest is not None else None,
            progress=progress,
        )
        result = staged.ingest
        if staged.unchanged:
            assert latest is not None
            return AddResult(latest, False, 0, result.manifest.size, 0, result.files_hashed)
        new = NewVersion(
            dataset=name,
            kind="files",
            hash_algorithm=ALGORITHM,
            content_hash=staged.manifest_oid,
            manifest_oid=staged.manifest_oid,
            size_bytes=result.manifest.size,
            num_files=len(result.manifest.files),
            message=message,
            step=staged.step,
            parents=[(latest.id, "previous")] if latest else [],
        )
        version = self.store.create_version(new)
        return AddResult(
            version,
            True,
            result.bytes_added,
            result.bytes_deduplicated,
            result.files_added,
            result.files_hashed,
        )

    def _add_table(
        self,
        name: str,
        src: Path,
        fmt: str,
        message: str | None,
        progress: Progress,
        source: str | None = None,
    ) -> AddResult:
        from modelcycle.data.formats import add_step
        from modelcycle.data.tables import stage_table

        latest = self.latest(name)
        with self._scratch() as tmp:
            staged = stage_table(src, fmt, tmp / "part-0.parquet", progress)
            part, manifest = staged.part, staged.manifest
            if latest is not None and latest.content_hash == staged.manifest_oid:
                return AddResult(latest, False, 0, part.size)
            progress.task("profiling")
            profile = staged.profile()
            added = not self.blobs.exists(part.oid)
            new = NewVersion(
                dataset=name,
                kind="table",
                hash_algorithm=ALGORITHM,
                content_hash=staged.manifest_oid,
                manifest_oid=staged.manifest_oid,
                size_bytes=part.size,
                num_rows=part.rows,
                schema=manifest.schema_list(),
                profile=profile,
                message=message,
                step=add_step(src, fmt, source),
                parents=[(latest.id, "previous")] if latest else [],
            )
            progress.task("storing")
            version = self._create(new, manifest, [(staged.part_path, part)])
        size = part.size
        return AddResult(
            version, True, size if added else 0, 0 if added else size, 1 if added else 0, 1
        )

    @staticmethod
    def _profile_paths(paths: list[str]) -> dict[str, Any]:
        from modelcycle.data.profile import profile_frame
        from modelcycle.data.tables import scan_parts

        return profile_frame(scan_parts(paths))

    def status(self, name: str, path: str | os.PathLike[str]) -> files_mod.FileChanges:
        """How the folder at ``path`` differs from the latest version of ``name``."""
        latest = self.resolve(name)
        src = Path(path).expanduser()
        if latest.kind != "files":
            from modelcycle.data.formats import detect_format
            from modelcycle.data.tables import write_parquet

            with self._scratch() as tmp:
                schema, rows, _ = write_parquet(src, detect_format(src, None), tmp / "p.parquet")
                part = Part(hash_file(tmp / "p.parquet"), rows, 0)
            old = self.manifest(latest)
            assert isinstance(old, TableManifest)
            same = (
                old.parts[0].oid == part.oid and list(old.schema) == schema if old.parts else False
            )
            return files_mod.FileChanges([], [], [] if same else [src.name], [])
        index = self._file_index(latest)
        return files_mod.folder_changes(src, index, stat_cache_path(self.state_dir))

    # -- reading ----------------------------------------------------------------------
    def catalog(self) -> list[dict[str, Any]]:
        out = []
        for ds, count, latest in self.store.list_datasets():
            if not count:
                continue
            out.append(
                {
                    "name": ds.name,
                    "kind": ds.kind,
                    "versions": count,
                    "latest": latest,
                    "created_at": ds.created_at.isoformat(),
                }
            )
        return out

    def versions(self, name: str) -> list[VersionRecord]:
        return self.store.versions(self._dataset(name).id)

    def tags(self, version: VersionRecord) -> list[str]:
        return self.store.tags(version.dataset_id).get(version.id, [])

    def describe(self, version: VersionRecord, *, profile: bool = True) -> dict[str, Any]:
        """Everything known about a version, as plain data (what `dataset show` prints)."""
        parents = self.store.parents(version.id)
        out: dict[str, Any] = {
            "ref": version.ref,
            "dataset": version.dataset,
            "version": version.version,
            "kind": version.kind,
            "content_hash": version.content_hash,
            "hash_algorithm": version.hash_algorithm,
            "num_rows": version.num_rows,
            "num_files": version.num_files,
            "size_bytes": version.size_bytes,
            "schema": version.schema,
            "parents": [{"ref": p.ref, "role": role} for p, role in parents],
            "step": version.step,
            "tags": self.tags(version),
            "message": version.message,
            "created_at": version.created_at.isoformat(),
            "created_by": version.created_by,
        }
        if profile:
            out["profile"] = version.profile
        return out

    def _local_parts(self, manifest: TableManifest) -> list[str]:
        """Paths polars can read for each part, verified against their hashes."""
        from modelcycle.blobs.local import LocalBlobStore

        paths = []
        for part in manifest.parts:
            if isinstance(self.blobs, LocalBlobStore):
                self.blobs.verify(part.oid)
                paths.append(str(self.blobs.path(part.oid)))
            else:
                cache = self.state_dir / "cache" / "parts"
                cache.mkdir(parents=True, exist_ok=True)
                dest = cache / f"{part.oid}.parquet"
                if not dest.exists() or hash_file(dest) != part.oid:
                    self.blobs.get_file(part.oid, dest)
                paths.append(str(dest))
        return paths

    def load(self, ref: str | VersionRecord) -> pl.DataFrame:
        """A table version as a polars DataFrame."""
        import polars as pl

        version = ref if isinstance(ref, VersionRecord) else self.resolve(ref)
        manifest = self.manifest(version)
        if not isinstance(manifest, TableManifest):
            raise UsageError(
                f"{version.ref} is a file dataset, not a table",
                hint="use `modelcycle dataset get` to materialize its files",
            )
        return pl.read_parquet(self._local_parts(manifest)) if manifest.parts else pl.DataFrame()

    def to_pandas(self, ref: str | VersionRecord) -> pd.DataFrame:
        return self.load(ref).to_pandas()

    def get(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        format: str | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """Materialize a version at ``dest``: its files, or its table as Parquet/CSV/JSON Lines."""
        version = self.resolve(ref)
        manifest = self.manifest(version)
        out = Path(dest).expanduser()
        progress = progress or NullProgress()
        if isinstance(manifest, FileManifest):
            if format not in (None, "files"):
                raise UsageError(
                    f"{version.ref} is a file dataset; --format {format} does not apply",
                    hint="leave --format out",
                )
            if out.exists() and any(out.iterdir()) if out.is_dir() else out.exists():
                raise ConflictError(
                    f"{out} exists and is not empty",
                    hint="choose a new or empty destination folder",
                )
            progress.task(f"writing {len(manifest.files)} files", total=len(manifest.files))
            for entry in manifest.files:
                target = out / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                self.blobs.get_file(entry.oid, target)
                os.chmod(target, entry.mode)
                progress.advance()
            return out
        fmt = format or {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}.get(
            out.suffix.lower()
        )
        if out.is_dir() or fmt is None:
            out = out / f"{version.dataset}-v{version.version}.{fmt or 'parquet'}"
            fmt = fmt or "parquet"
        if fmt not in ("parquet", "csv", "jsonl"):
            raise UsageError(f"cannot write a table as {fmt!r}", hint="use parquet, csv or jsonl")
        if out.exists():
            raise ConflictError(f"{out} exists", hint="choose another destination or remove it")
        out.parent.mkdir(parents=True, exist_ok=True)
        import polars as pl

        lf = pl.scan_parquet(self._local_parts(manifest))
        tmp = out.with_name(f".{out.name}.mc-tmp")
        try:
            if fmt == "parquet":
                lf.sink_parquet(tmp)
            elif fmt == "csv":
                lf.sink_csv(tmp)
            else:
                lf.sink_ndjson(tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return out

    # -- tags and deletion -----------------------------------------------------------------
    def tag(self, ref: str, tag: str) -> VersionRecord:
        version = self.resolve(ref)
        self.store.set_tag(version, check_tag(tag))
        return version

    def untag(self, name: str, tag: str) -> None:
        ds = self._dataset(name)
        if not self.store.remove_tag(ds.id, name, tag):
            raise NotFoundError(
                f"dataset {name!r} has no tag {tag!r}",
                hint=f"`modelcycle dataset versions {name}` shows its tags",
            )

    def delete(self, ref: str, *, force: bool = False) -> list[VersionRecord]:
        """Delete one version (``NAME@N``) or every version (``NAME``).

        A version that live versions were made from is only deleted with ``force``.
        Lineage metadata stays; blobs no other version uses are freed by ``gc``.
        """
        r = parse_ref(ref)
        targets = [self.resolve(r)] if r.selector else self.versions(r.name)
        ids = {v.id for v in targets}
        dependents = sorted(
            {c.ref for v in targets for c in self.store.children(v.id) if c.id not in ids}
        )
        if dependents and not force:
            raise ConflictError(
                f"{ref} is used by {len(dependents)} other version(s): {', '.join(dependents[:5])}",
                hint="delete those first, or pass --force (their lineage is kept)",
                dependents=dependents,
            )
        self.store.delete_versions(targets, {"force": force, "dependents": dependents})
        return targets

    # -- recipes, validation, splits -------------------------------------------------------
    def _write_table(
        self,
        name: str,
        df: pl.DataFrame,
        step: dict[str, Any],
        parents: list[tuple[int, str]],
        message: str | None,
        cache_key: str | None,
    ) -> VersionRecord:
        from modelcycle.data.tables import write_frame

        with self._scratch() as tmp:
            path = tmp / "part-0.parquet"
            schema, rows = write_frame(df, path)
            size = path.stat().st_size
            part = Part(hash_file(path, size), rows, size)
            manifest = TableManifest(tuple(schema), (part,))
            manifest_bytes = manifest.to_bytes()
            new = NewVersion(
                dataset=name,
                kind="table",
                hash_algorithm=ALGORITHM,
                content_hash=hash_bytes(manifest_bytes),
                manifest_oid=hash_bytes(manifest_bytes),
                size_bytes=size,
                num_rows=rows,
                schema=manifest.schema_list(),
                profile=self._profile_paths([str(path)]),
                step=step,
                cache_key=cache_key,
                message=message,
                parents=parents,
            )
            return self._create(new, manifest, [(path, part)])

    def write_table(
        self,
        name: str,
        df: pl.DataFrame,
        *,
        step: dict[str, Any],
        parents: list[tuple[VersionRecord, str]],
        message: str | None = None,
    ) -> VersionRecord:
        """A new table version of ``name`` made by another part of modelcycle.

        ``step`` records what made it (its ``op`` names the producer); ``parents`` are
        (version, role) pairs for lineage.
        """
        check_name(name)
        step = {**step, "library": f"modelcycle {__version__}"}
        return self._write_table(
            name, df, step, [(v.id, role) for v, role in parents], message, None
        )

    def write_files(
        self,
        name: str,
        entries: list[FileEntry],
        extra: dict[str, bytes],
        *,
        step: dict[str, Any],
        parents: list[tuple[VersionRecord, str]],
        message: str | None = None,
    ) -> VersionRecord:
        """A new file version: stored ``entries`` (reused as they are) plus ``extra`` files."""
        check_name(name)
        out = {e.path: e for e in entries}
        with self.blobs.batch() as batch:
            for path, data in extra.items():
                out[path] = FileEntry(path, batch.put_bytes(data).oid, len(data), 0o644)
            manifest = FileManifest(tuple(sorted(out.values(), key=lambda e: e.path)))
            manifest_bytes = manifest.to_bytes()
            oid = batch.put_bytes(manifest_bytes).oid
        return self.store.create_version(
            NewVersion(
                dataset=name,
                kind="files",
                hash_algorithm=ALGORITHM,
                content_hash=oid,
                manifest_oid=oid,
                size_bytes=manifest.size,
                num_files=len(manifest.files),
                step={**step, "library": f"modelcycle {__version__}"},
                message=message,
                parents=[(v.id, role) for v, role in parents],
            )
        )

    def apply(
        self,
        ref: str,
        recipe: Recipe | str | os.PathLike[str],
        *,
        message: str | None = None,
        into: str | None = None,
    ) -> AddResult:
        """Run a recipe on a version; the result is the next version of ``into`` (default:
        the same dataset). The same recipe on the same version returns the earlier result."""
        from modelcycle.data.recipes import Recipe, apply_recipe

        if not isinstance(recipe, Recipe):
            recipe = Recipe.load(Path(recipe))
        source = self.resolve(ref)
        target = check_name(into) if into else source.dataset
        cache_key = hash_text(
            "apply", source.content_hash, recipe.content_hash, target, __version__
        )
        cached = self.store.version_by_cache_key(cache_key)
        if cached is not None:
            return AddResult(cached, False)
        step = {
            "op": "recipe",
            "recipe": recipe.to_list(),
            "recipe_hash": recipe.content_hash,
            "recipe_source": recipe.source,
            "input": source.ref,
            "library": f"modelcycle {__version__}",
        }
        if source.kind == "files":
            return self._apply_files(source, recipe, target, step, message, cache_key)
        df, reports = apply_recipe(self.load(source), recipe)
        step["steps"] = [r.to_dict() for r in reports]
        version = self._write_table(target, df, step, [(source.id, "input")], message, cache_key)
        return AddResult(version, True)

    def _apply_files(
        self,
        source: VersionRecord,
        recipe: Recipe,
        target: str,
        step: dict[str, Any],
        message: str | None,
        cache_key: str,
    ) -> AddResult:
        from modelcycle.data.augment import augment_image, is_image

        manifest = self.manifest(source)
        assert isinstance(manifest, FileManifest)
        entries = list(manifest.files)
        reports = []
        with self.blobs.batch() as batch:
            for s in recipe.steps:
                if s.name != "augment":
                    raise UsageError(
                        f"{s.where} works on tables, not on file datasets",
                        hint="file datasets take `augment` steps only",
                    )
                seed = int(s.params.get("seed", 0))
                copies = int(s.params.get("copies", 1))
                ops = s.params.get("ops", ["flip"])
                out = list(entries) if s.params.get("include_original", True) else []
                for entry in entries:
                    if not is_image(entry.path):
                        continue
                    data = self.blobs.read_bytes(entry.oid)
                    stem, _, ext = entry.path.rpartition(".")
                    for k in range(copies):
                        rng = random.Random(hash_text(str(seed), entry.path, str(k)))
                        blob = augment_image(data, entry.path, ops, rng)
                        put = batch.put_bytes(blob)
                        out.append(
                            FileEntry(f"{stem}.aug{k + 1}.{ext}", put.oid, len(blob), entry.mode)
                        )
                reports.append(
                    {
                        "step": s.index,
                        "name": s.name,
                        "files_in": len(entries),
                        "files_out": len(out),
                        "seed": seed,
                        "ops": ops,
                        "copies": copies,
                    }
                )
                entries = out
            new_manifest = FileManifest(tuple(sorted(entries, key=lambda e: e.path)))
            manifest_bytes = new_manifest.to_bytes()
            oid = batch.put_bytes(manifest_bytes).oid
        step["steps"] = reports
        version = self.store.create_version(
            NewVersion(
                dataset=target,
                kind="files",
                hash_algorithm=ALGORITHM,
                content_hash=oid,
                manifest_oid=oid,
                size_bytes=new_manifest.size,
                num_files=len(new_manifest.files),
                step=step,
                cache_key=cache_key,
                message=message,
                parents=[(source.id, "input")],
            )
        )
        return AddResult(version, True)

    def validate(
        self, ref: str, rules: str | os.PathLike[str] | list[dict[str, Any]]
    ) -> ValidationReport:
        """Check every rule on a table version; the report lists all failures."""
        from modelcycle.data.rules import evaluate, load_rules, parse_rules_doc

        items = parse_rules_doc(rules) if isinstance(rules, list) else load_rules(Path(rules))
        version = self.resolve(ref)
        failures = evaluate(self.load(version), items)
        report = ValidationReport(version.ref, len(items), [f.to_dict() for f in failures])
        self.store.record_event(
            "dataset.validated",
            version.ref,
            {"ok": report.ok, "rules": len(items), "failed": len(failures)},
        )
        return report

    def split(
        self,
        ref: str,
        ratios: str | list[float] = "0.7,0.15,0.15",
        *,
        seed: int = 0,
        stratify: str | None = None,
        group: str | None = None,
        names: list[str] | None = None,
        message: str | None = None,
    ) -> list[VersionRecord]:
        """Split a table version into train/validation(/test) datasets ``NAME-train`` …"""
        from modelcycle.data.split import DEFAULT_NAMES, assign, parse_ratios

        parts_ratios = parse_ratios(ratios)
        source = self.resolve(ref)
        names = names or (list(DEFAULT_NAMES) if len(parts_ratios) == 3 else ["train", "test"])
        if len(names) != len(parts_ratios):
            raise UsageError(
                f"{len(names)} names for {len(parts_ratios)} ratios", hint="give one name per ratio"
            )
        df = self.load(source)
        assignment = assign(df, parts_ratios, seed, stratify, group)
        out = []
        for i, part_name in enumerate(names):
            target = check_name(f"{source.dataset}-{part_name}")
            cache_key = hash_text(
                "split",
                source.content_hash,
                str(parts_ratios),
                str(seed),
                str(stratify),
                str(group),
                target,
                __version__,
            )
            cached = self.store.version_by_cache_key(cache_key)
            if cached is not None:
                out.append(cached)
                continue
            step = {
                "op": "split",
                "input": source.ref,
                "part": part_name,
                "ratios": parts_ratios,
                "seed": seed,
                "stratify": stratify,
                "group": group,
                "library": f"modelcycle {__version__}",
            }
            out.append(
                self._write_table(
                    target,
                    df.filter(assignment == i),
                    step,
                    [(source.id, "split")],
                    message,
                    cache_key,
                )
            )
        return out

    def diff(self, a: str, b: str, *, key: str | None = None) -> dict[str, Any]:
        """What changed from version ``a`` to version ``b``."""
        va, vb = self.resolve(a), self.resolve(b)
        if va.kind != vb.kind:
            raise UsageError(
                f"{va.ref} is a {va.kind} dataset and {vb.ref} a {vb.kind} dataset",
                hint="compare two tables or two file datasets",
            )
        ma, mb = self.manifest(va), self.manifest(vb)
        out: dict[str, Any] = {
            "from": va.ref,
            "to": vb.ref,
            "kind": va.kind,
            "same_content": va.content_hash == vb.content_hash,
        }
        if isinstance(ma, FileManifest) and isinstance(mb, FileManifest):
            changes = files_mod.compare(ma, mb)
            out["files"] = changes.to_dict()
            out["summary"] = {k: len(v) for k, v in changes.to_dict().items()}  # type: ignore[arg-type]
            return out
        from modelcycle.data import diff as diff_mod

        da, db = self.load(va), self.load(vb)
        out["schema"] = diff_mod.schema_changes(da.schema, db.schema)
        out["rows"] = diff_mod.row_changes(da, db, key)
        out["rows"]["from_count"], out["rows"]["to_count"] = da.height, db.height
        out["columns"] = diff_mod.distribution_changes(va.profile or {}, vb.profile or {})
        return out

    def lineage(self, ref: str, *, depth: int = 50) -> LineageNode:
        """The ancestry of a version: what it was made from, recursively."""

        def walk(v: VersionRecord, role: str | None, d: int, seen: frozenset[int]) -> LineageNode:
            if d == 0 or v.id in seen:
                return LineageNode(v, role, [])
            parents = [walk(p, r, d - 1, seen | {v.id}) for p, r in self.store.parents(v.id)]
            return LineageNode(v, role, parents)

        return walk(self.resolve(ref), None, depth, frozenset())
