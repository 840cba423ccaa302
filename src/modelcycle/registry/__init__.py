"""The model registry: named models whose versions are packages logged by runs.

A version is registered from a run's model artifact folder (``models/NAME``): its files
stay where they are in the blob store and the version records a manifest of them, the
flavor, the signature and the metrics. Refs read ``NAME@3``, ``NAME@champion`` (an
alias) or ``NAME`` / ``NAME@latest``. Stages move ``registered → staging → production →
archived → retired``; one version at a time is in production, and every move is kept
so ``history`` can say what was in production at any moment.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ConflictError, InputDataError, NotFoundError, UsageError
from modelcycle.core.hashing import hash_bytes
from modelcycle.data.manifest import FileEntry, FileManifest, load_manifest
from modelcycle.data.refs import check_name, check_tag, parse_ref
from modelcycle.data.yamlio import suggest
from modelcycle.registry.retirement import LastTraffic, RetirementReport, retire_stale
from modelcycle.store.registry import ModelVersionRow, RegistryStore, Transition

if TYPE_CHECKING:
    from modelcycle.blobs import BlobStore
    from modelcycle.flavors.package import LoadedModel
    from modelcycle.tracking.service import RunService

STAGES = ("registered", "staging", "production", "archived", "retired")
MOVES = {
    "registered": ("staging", "production", "archived"),
    "staging": ("production", "archived"),
    "production": ("archived", "staging"),
    "archived": ("staging", "production"),
    "retired": (),
}


class RegistryService:
    def __init__(
        self,
        store: RegistryStore,
        runs: RunService,
        blobs: BlobStore,
        cache_dir: Path,
        notify: Callable[[str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.runs = runs
        self.blobs = blobs
        self.cache_dir = cache_dir
        # Told of every change after it commits (webhooks); never raises.
        self._notify = notify or (lambda kind, subject, payload: None)
        # Checks that may refuse a retirement (deployments routing to the version); each raises.
        self.retire_guards: list[Callable[[ModelVersionRow], None]] = []
        # When a version last served a prediction (the workspace wires the prediction log);
        # the retirement policy refuses to run without it.
        self.last_traffic: LastTraffic | None = None

    def _stage_event(
        self, v: ModelVersionRow, to: str, reason: str | None, forced: bool = False
    ) -> None:
        self._notify(
            "model.stage",
            v.ref,
            {
                "model": v.model,
                "version": v.version,
                "from": v.stage,
                "to": to,
                "reason": reason,
                "forced": forced,
            },
        )

    # -- registering -------------------------------------------------------------------
    def register(
        self,
        run_id: str,
        name: str,
        *,
        path: str = "models/model",
        description: str | None = None,
    ) -> ModelVersionRow:
        """Register the model package a run logged under ``path`` as the next version."""
        check_name(name, "model name")
        run = self.runs.get(run_id)
        prefix = path.strip("/") + "/"
        files = [
            (p[len(prefix) :], oid, size)
            for p, oid, size in self.runs.store.artifacts(run.id)
            if p.startswith(prefix)
        ]
        if not any(p == "model.toml" for p, _, _ in files):
            logged = sorted(
                {
                    p.split("/")[1]
                    for p, _, _ in self.runs.store.artifacts(run.id)
                    if p.startswith("models/") and p.count("/") >= 2
                }
            )
            raise NotFoundError(
                f"run {run.id[:8]} has no model package under {path!r}",
                hint=f"its logged models: {', '.join(f'models/{m}' for m in logged) or 'none'}; "
                "log one with run.log_model(model, NAME)",
            )
        manifest = FileManifest(tuple(FileEntry(p, o, s, 0o644) for p, o, s in sorted(files)))
        data = manifest.to_bytes()
        oid = hash_bytes(data)
        with self.blobs.batch() as batch:
            batch.put_bytes(data, oid)
        meta = self._model_toml(manifest)
        flavor = meta.get("flavor", {})
        row = self.store.register(
            name,
            {
                "run_id": run.id,
                "source": path.strip("/"),
                "manifest_oid": oid,
                "flavor": flavor.get("name", "unknown")
                if isinstance(flavor, dict)
                else str(flavor),
                "signature": meta.get("signature"),
                "metrics": {**run.metrics, **(meta.get("metrics") or {})},
                "needs_trust": list(meta.get("needs_trust") or []),
                "description": description,
            },
        )
        self._notify(
            "model.registered",
            row.ref,
            {
                "model": row.model,
                "version": row.version,
                "run_id": row.run_id,
                "flavor": row.flavor,
                "stage": row.stage,
            },
        )
        return row

    def _model_toml(self, manifest: FileManifest) -> dict[str, Any]:
        entry = manifest.by_path()["model.toml"]
        try:
            return tomllib.loads(self.blobs.read_bytes(entry.oid).decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputDataError(
                f"the package's model.toml is damaged: {e}", hint="log the model again"
            ) from e

    # -- refs --------------------------------------------------------------------------
    def _model(self, name: str) -> int:
        mid = self.store.model_id(name)
        if mid is None:
            names = [m["name"] for m in self.store.models()]
            raise NotFoundError(
                f"no model named {name!r}{suggest(name, names)}",
                hint="`modelcycle model list` shows the models; `modelcycle model register` "
                "adds one",
            )
        return mid

    def resolve(self, ref: str) -> ModelVersionRow:
        """``NAME``, ``NAME@latest``, ``NAME@3`` or ``NAME@ALIAS``."""
        r = parse_ref(ref)
        mid = self._model(r.name)
        if r.selector is None or r.selector == "latest":
            versions = self.store.versions(mid)
            if not versions:
                raise NotFoundError(f"model {r.name!r} has no versions", hint="register one")
            return versions[-1]
        if r.number is not None:
            found = self.store.version(mid, r.number)
            if found is None:
                raise NotFoundError(
                    f"{ref} does not exist",
                    hint=f"`modelcycle model versions {r.name}` lists its versions",
                )
            return found
        aliases = self.store.aliases(mid)
        if r.selector in aliases:
            found = self.store.version(mid, aliases[r.selector])
            assert found is not None
            return found
        raise NotFoundError(
            f"model {r.name!r} has no version or alias {r.selector!r}"
            f"{suggest(r.selector, aliases)}",
            hint=f"aliases: {', '.join(aliases) or 'none'}",
        )

    # -- reading -----------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        out = []
        for m in self.store.models():
            mid = self.store.model_id(m["name"])
            assert mid is not None
            prod = [v.version for v in self.store.versions(mid) if v.stage == "production"]
            out.append(
                {
                    **m,
                    "created_at": m["created_at"].isoformat(),
                    "production": prod[0] if prod else None,
                    "aliases": self.store.aliases(mid),
                }
            )
        return out

    def versions(self, name: str) -> list[ModelVersionRow]:
        return self.store.versions(self._model(name))

    def show(self, ref: str) -> dict[str, Any]:
        v = self.resolve(ref)
        manifest = self._manifest(v)
        aliases = [a for a, n in self.store.aliases(v.model_id).items() if n == v.version]
        lineage: dict[str, Any] = {"run": v.run_id}
        if v.run_id:
            run = self.runs.get(v.run_id)
            lineage.update(
                experiment=run.experiment,
                inputs=[{"ref": ref_, "role": role} for ref_, role in run.inputs()],
            )
        return {
            "model": v.model,
            "version": v.version,
            "ref": v.ref,
            "stage": v.stage,
            "aliases": aliases,
            "flavor": v.flavor,
            "signature": v.signature,
            "metrics": v.metrics,
            "needs_trust": v.needs_trust,
            "description": v.description,
            "created_at": v.created_at.isoformat(),
            "created_by": v.created_by,
            "lineage": lineage,
            "files": [{"path": e.path, "size": e.size} for e in manifest.files],
            "size_bytes": manifest.size,
        }

    def _manifest(self, v: ModelVersionRow) -> FileManifest:
        manifest = load_manifest(self.blobs.read_bytes(v.manifest_oid), v.ref)
        assert isinstance(manifest, FileManifest)
        return manifest

    def lineage(self, ref: str) -> dict[str, Any]:
        """The graph behind a version: its run, the dataset versions the run read (with
        their roles), and each of those back through recipes and splits to raw data."""
        v = self.resolve(ref)
        out: dict[str, Any] = {
            "model": v.ref,
            "stage": v.stage,
            "flavor": v.flavor,
            "created_at": v.created_at.isoformat(),
            "run": None,
            "inputs": [],
        }
        if not v.run_id:
            return out
        run = self.runs.get(v.run_id)
        env = run.environment or {}
        out["run"] = {
            "id": run.id,
            "name": run.name,
            "experiment": run.experiment,
            "status": run.status,
            "git_commit": env.get("git_commit"),
            "git_dirty": env.get("git_dirty"),
            "parent_id": run.parent_id,
        }
        for dataset_ref, role in run.inputs():
            node = self.runs.datasets.lineage(dataset_ref).to_dict()
            node["role"] = role
            out["inputs"].append(node)
        return out

    # -- aliases and stages ------------------------------------------------------------
    def set_alias(
        self, name: str, alias: str, version: int | str, reason: str | None = None
    ) -> ModelVersionRow:
        check_tag(alias)
        if alias == "latest":
            raise UsageError("'latest' is not an alias", hint="it always means the newest version")
        target = self.resolve(f"{name}@{int(version)}")
        if target.stage == "retired":
            raise ConflictError(
                f"{target.ref} is retired", hint="point the alias at a live version"
            )
        previous = self.store.aliases(target.model_id).get(alias)
        self.store.set_alias(target, alias, reason)
        self._notify(
            "model.alias.set",
            target.ref,
            {
                "model": name,
                "version": target.version,
                "alias": alias,
                "previous": previous,
                "reason": reason,
            },
        )
        return target

    def remove_alias(self, name: str, alias: str) -> None:
        if not self.store.remove_alias(self._model(name), name, alias):
            raise NotFoundError(f"model {name!r} has no alias {alias!r}", hint="")
        self._notify("model.alias.removed", name, {"model": name, "alias": alias})

    def transition(
        self, ref: str, stage: str, *, reason: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Move a version to ``stage`` (production is exclusive: the previous production
        version is archived in the same transaction)."""
        if stage not in STAGES[1:4]:
            raise UsageError(
                f"unknown stage {stage!r}{suggest(stage, STAGES[1:4])}",
                hint="stages: staging, production, archived (retire with `model retire`)",
            )
        v = self.resolve(ref)
        if v.stage == "retired":
            raise ConflictError(
                f"{v.ref} is retired and cannot move to {stage}",
                hint="register the model again to use it",
            )
        if v.stage == stage:
            raise ConflictError(f"{v.ref} is in {stage} already", hint="")
        if stage not in MOVES[v.stage] and not force:
            raise ConflictError(
                f"{v.ref} cannot move from {v.stage} to {stage}",
                hint=f"from {v.stage}: {', '.join(MOVES[v.stage])}",
            )
        archived = self.store.set_stage(
            v, stage, reason=reason, forced=force, exclusive=stage == "production"
        )
        self._stage_event(v, stage, reason, force)
        for a in archived:
            self._stage_event(a, "archived", f"replaced by {v.ref}")
        return {"ref": v.ref, "from": v.stage, "to": stage, "archived": [a.ref for a in archived]}

    def history(self, name: str) -> list[Transition]:
        return self.store.transitions(self._model(name))

    def in_stage_at(self, name: str, when: dt.datetime, stage: str = "production") -> int | None:
        """The version that was in ``stage`` at time ``when`` (None if none was)."""
        current: dict[int, str] = {}
        for tr in self.history(name):
            if tr.at > when:
                break
            if tr.version is not None and tr.to_stage is not None:
                current[tr.version] = tr.to_stage
        holders = [v for v, s in current.items() if s == stage]
        return holders[-1] if holders else None

    def rollback(self, name: str, *, reason: str | None = None) -> dict[str, Any]:
        """Put the version that was in production before the current one back."""
        versions = {v.version: v for v in self.versions(name)}
        now = [v for v in versions.values() if v.stage == "production"]
        if not now:
            raise ConflictError(f"model {name!r} has no version in production", hint="")
        previous = [
            tr.version
            for tr in self.history(name)
            if tr.to_stage == "production" and tr.version != now[0].version
        ]
        candidates = [
            n for n in reversed(previous) if n is not None and versions[n].stage != "retired"
        ]
        if not candidates:
            raise ConflictError(
                f"model {name!r} had no other version in production to roll back to",
                hint="promote a version with `modelcycle model promote`",
            )
        target = versions[candidates[0]]
        why = reason or f"rollback from {now[0].ref}"
        moved = self.store.set_stage(target, "production", reason=why, forced=False, exclusive=True)
        self._stage_event(target, "production", why)
        for a in moved:
            self._stage_event(a, "archived", f"replaced by {target.ref}")
        return {"from": now[0].ref, "to": target.ref}

    def retire(self, ref: str, *, reason: str | None = None) -> ModelVersionRow:
        """Retire a version: its aliases are removed and ``gc`` may free its package."""
        v = self.resolve(ref)
        if v.stage == "retired":
            raise ConflictError(f"{v.ref} is retired already", hint="")
        if v.stage == "production":
            raise ConflictError(
                f"{v.ref} is in production",
                hint="promote another version (or `model rollback`) first",
            )
        for guard in self.retire_guards:
            guard(v)
        for alias, n in self.store.aliases(v.model_id).items():
            if n == v.version and self.store.remove_alias(v.model_id, v.model, alias):
                self._notify("model.alias.removed", v.model, {"model": v.model, "alias": alias})
        self.store.set_stage(v, "retired", reason=reason, forced=False, exclusive=False)
        self._notify(
            "model.retired",
            v.ref,
            {"model": v.model, "version": v.version, "from": v.stage, "reason": reason},
        )
        return v

    def retire_stale(
        self,
        *,
        older_than_days: float,
        model: str | None = None,
        dry_run: bool = False,
        now: dt.datetime | None = None,
        reason: str | None = None,
    ) -> RetirementReport:
        """Retire the archived versions (of ``model``, or of every model) that have been
        archived for at least ``older_than_days`` days, that no alias or deployment points
        at and that logged no prediction in that time; report the others with the reason
        they stay. Retiring goes through `retire` (same events and webhooks); ``gc`` then
        frees the packages. ``now`` defaults to the current time (UTC); with
        ``dry_run``, nothing changes. See `modelcycle.registry.retirement`."""
        return retire_stale(
            self,
            older_than_days=older_than_days,
            model=model,
            dry_run=dry_run,
            now=now,
            reason=reason,
        )

    # -- packages ------------------------------------------------------------------------
    def package(self, ref: str, dest: str | os.PathLike[str]) -> Path:
        """Write the version's package folder (model.toml, model files, Dockerfile …)."""
        v = self.resolve(ref)
        if v.stage == "retired":
            raise ConflictError(f"{v.ref} is retired; its package may be gone", hint="")
        out = Path(dest).expanduser()
        if out.exists() and any(out.iterdir()):
            raise ConflictError(f"{out} exists and is not empty", hint="choose an empty folder")
        # A unique name: two processes loading the same version must not share it.
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.mc-tmp")
        try:
            for entry in self._manifest(v).files:
                target = tmp / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                self.blobs.get_file(entry.oid, target)
                os.chmod(target, 0o644)
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    def load(self, ref: str, *, trusted: tuple[str, ...] | list[str] = ()) -> LoadedModel:
        """The version's model, ready to predict (signature checked by ``predict``)."""
        from modelcycle.flavors.package import load_package

        v = self.resolve(ref)
        folder = self.cache_dir / v.manifest_oid
        if not folder.exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.package(v.ref, folder)
            except (ConflictError, OSError):
                if not (folder / "model.toml").exists():
                    raise
                # another process cached the same package first: use its copy
        return load_package(folder, trusted=trusted)
