"""The model package: one folder that holds a model and everything needed to run it.

::

    model.toml            flavor + its metadata, signature, requirements, python version,
                          metrics, lineage, created time, and the BLAKE3 hash of every file
    model/                the model in its framework's own safe format
    input_example.json    (or .parquet for data frames)
    requirements.txt      the framework(s), pinned to the versions that saved the model
    Dockerfile            a starting point for a serving image (``modelcycle serve``)

`save_package` writes into a hidden temporary folder beside the target and renames it into
place, so a crash never leaves a half-written package. `load_package` checks every file
against its hash, then loads the model through its flavor; it never imports code the caller
has not trusted (see `modelcycle.flavors.trust`).
"""

from __future__ import annotations

import datetime as dt
import errno
import importlib.metadata
import os
import platform
import shutil
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelcycle.core.errors import ConflictError, InputDataError, NotFoundError, UsageError
from modelcycle.core.hashing import ALGORITHM, HashInfo, hash_bytes, hash_file
from modelcycle.flavors import toml_writer
from modelcycle.flavors.base import Flavor
from modelcycle.flavors.dockerfile import dockerfile, requirements_txt
from modelcycle.flavors.examples import read_example, write_example
from modelcycle.flavors.registry import flavor_for, get_flavor
from modelcycle.flavors.signature import Signature

FORMAT = 1
MANIFEST = "model.toml"
MODEL_DIR = "model"
_DAMAGED = "the package is damaged or was edited by hand; save the model again"


@dataclass(frozen=True)
class PackageInfo:
    """What ``model.toml`` says about a package (nothing is imported to read it)."""

    path: Path
    flavor: str
    flavor_meta: dict[str, Any]
    signature: Signature | None
    requirements: tuple[str, ...]
    #: code that loading imports and the caller must pass in ``trusted``
    needs_trust: tuple[str, ...]
    #: relative path -> ``blake3:<hex>`` for every file but model.toml
    files: dict[str, str]
    #: ``blake3:<hex>`` of model.toml, which holds every other file's hash
    digest: str
    meta: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class LoadedModel:
    """A package's model, ready to predict."""

    info: PackageInfo
    flavor: Flavor
    model: Any = field(repr=False)

    @property
    def native(self) -> Any:
        """The framework's own model object."""
        return self.flavor.native(self.model)

    @property
    def signature(self) -> Signature | None:
        return self.info.signature

    @property
    def meta(self) -> dict[str, Any]:
        """The whole of ``model.toml``."""
        return self.info.meta

    @property
    def has_predict_proba(self) -> bool:
        return self.flavor.has_predict_proba(self.model)

    def predict(self, data: Any) -> Any:
        """Predictions for ``data`` (a frame, an array, a dict of columns, records, a tensor)."""
        return self.flavor.predict(self.model, data)

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities; `UsageError` when the model has none."""
        return self.flavor.predict_proba(self.model, data)

    def input_example(self) -> Any:
        """The input example saved with the package, or None."""
        entry = self.info.meta.get("input_example")
        return None if entry is None else read_example(self.info.path, entry)


def save_package(
    model: Any,
    folder: str | os.PathLike[str],
    *,
    flavor: str | Flavor | None = None,
    input_example: Any = None,
    signature: Signature | Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    extra_requirements: Sequence[str] = (),
    init_kwargs: Mapping[str, Any] | None = None,
) -> PackageInfo:
    """Write ``model`` as a package into ``folder``, which must not exist or be empty.

    ``flavor`` is found from the model's type unless given. The signature is inferred from
    ``input_example`` and the model's predictions on it unless given. ``init_kwargs`` tells
    flavors that rebuild an object from its class (pytorch, python_function) how to call it.
    """
    target = Path(folder)
    _check_target(target)
    chosen = _choose_flavor(model, flavor)
    if init_kwargs is not None and not chosen.takes_init_kwargs:
        raise UsageError(
            f"the {chosen.name} flavor takes no init_kwargs",
            hint="init_kwargs is for pytorch modules saved as weights and python_function models",
        )
    sig = _signature(chosen, model, input_example, signature)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _write(
            tmp,
            chosen,
            model,
            sig,
            input_example,
            metrics,
            lineage,
            extra_requirements,
            init_kwargs,
        )
        _fsync_tree(tmp)
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_package(target)


def read_package(folder: str | os.PathLike[str]) -> PackageInfo:
    """What ``model.toml`` of the package in ``folder`` says; imports no framework."""
    path = Path(folder)
    manifest = path / MANIFEST
    if not path.is_dir():
        raise NotFoundError(f"no model package at {path}", hint="check the path")
    if not manifest.is_file():
        raise InputDataError(
            f"{path} is not a model package: it has no {MANIFEST}",
            hint="point at a folder written by save_package",
        )
    raw = manifest.read_bytes()
    try:
        meta = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputDataError(f"{manifest} is not valid TOML: {e}", hint=_DAMAGED) from e
    fmt = meta.get("format")
    if not isinstance(fmt, int):
        raise InputDataError(f"{manifest} has no format number", hint=_DAMAGED)
    if fmt > FORMAT:
        raise UsageError(
            f"{path} was written in package format {fmt}; this modelcycle reads up to {FORMAT}",
            hint="upgrade modelcycle: pip install -U modelcycle",
        )
    flavor = meta.get("flavor")
    flavor_meta = meta.get("flavor_meta")
    files = meta.get("files")
    if (
        not isinstance(flavor, str)
        or not isinstance(flavor_meta, dict)
        or not isinstance(files, dict)
    ):
        raise InputDataError(f"{manifest} lacks 'flavor', [flavor_meta] or [files]", hint=_DAMAGED)
    sig = meta.get("signature")
    return PackageInfo(
        path=path,
        flavor=flavor,
        flavor_meta=flavor_meta,
        signature=None if sig is None else Signature.from_dict(sig),
        requirements=tuple(str(r) for r in meta.get("requirements", [])),
        needs_trust=tuple(str(n) for n in meta.get("needs_trust", [])),
        files={str(k): str(v) for k, v in files.items()},
        digest=str(HashInfo(ALGORITHM, hash_bytes(raw))),
        meta=meta,
    )


def load_package(folder: str | os.PathLike[str], *, trusted: Sequence[str] = ()) -> LoadedModel:
    """Load the package in ``folder``, after checking every file against its hash.

    ``trusted`` names code the package may import (``"mypkg.nets.Net"``, ``"mypkg.*"``);
    `PackageInfo.needs_trust` lists what a package asks for.
    """
    if isinstance(trusted, str):
        raise UsageError(
            "trusted must be a list of names, not one string", hint=f"trusted=[{trusted!r}]"
        )
    info = read_package(folder)
    verify_files(info)
    flavor = get_flavor(info.flavor)
    model = flavor.load(info.path / MODEL_DIR, info.flavor_meta, trusted=trusted)
    return LoadedModel(info=info, flavor=flavor, model=model)


def verify_files(info: PackageInfo) -> None:
    """Raise `InputDataError` if a file listed in model.toml is missing or changed."""
    root = info.path.resolve()
    for rel, recorded in info.files.items():
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise InputDataError(
                f"{MANIFEST} lists a file outside the package: {rel}", hint=_DAMAGED
            )
        if not path.is_file():
            raise InputDataError(f"package file {rel} is missing from {info.path}", hint=_DAMAGED)
        expected = HashInfo.parse(recorded)
        if expected.algorithm != ALGORITHM:
            raise InputDataError(
                f"{rel} has a {expected.algorithm} hash; expected {ALGORITHM}", hint=_DAMAGED
            )
        if hash_file(path) != expected.value:
            raise InputDataError(
                f"package file {rel} does not match its hash in {MANIFEST}", hint=_DAMAGED
            )


def _check_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConflictError(
            f"{target} exists and is not an empty folder",
            hint="save the package to a new folder, or remove the old one first",
        )


def _choose_flavor(model: Any, flavor: str | Flavor | None) -> Flavor:
    if flavor is None:
        return flavor_for(model)
    chosen = get_flavor(flavor) if isinstance(flavor, str) else flavor
    if not chosen.handles(model):
        raise UsageError(
            f"the {chosen.name} flavor cannot save a {type(model).__qualname__}",
            hint=f"leave flavor unset to detect it (would be {flavor_for(model).name!r})",
        )
    return chosen


def _signature(
    flavor: Flavor, model: Any, example: Any, given: Signature | Mapping[str, Any] | None
) -> Signature | None:
    if isinstance(given, Signature):
        return given
    if given is not None:
        return Signature.from_dict(given)
    if example is None:
        return None
    try:
        output = flavor.predict(model, example)
    except Exception as e:
        raise InputDataError(
            f"the model cannot predict on the input example: {type(e).__name__}: {e}",
            hint="pass an input example shaped like the data the model was trained on",
        ) from e
    return Signature.infer(example, output)


def _write(
    tmp: Path,
    flavor: Flavor,
    model: Any,
    sig: Signature | None,
    example: Any,
    metrics: Mapping[str, Any] | None,
    lineage: Mapping[str, Any] | None,
    extra_requirements: Sequence[str],
    init_kwargs: Mapping[str, Any] | None,
) -> None:
    (tmp / MODEL_DIR).mkdir()
    flavor_meta = flavor.save(model, tmp / MODEL_DIR, init_kwargs=init_kwargs)
    requirements = list(dict.fromkeys([*flavor.requirements(model), *extra_requirements]))
    needs_trust = flavor.needs_trust(flavor_meta)
    python = platform.python_version()
    version = _modelcycle_version()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "flavor": flavor.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python_version": python,
        "modelcycle_version": version,
        "requirements": requirements,
        "needs_trust": needs_trust,
        "flavor_meta": _toml_values(flavor_meta, "flavor metadata"),
    }
    if sig is not None:
        meta["signature"] = sig.to_dict()
    if example is not None:
        meta["input_example"] = write_example(example, tmp)
    meta["metrics"] = _toml_values(dict(metrics or {}), "metrics")
    meta["lineage"] = _toml_values(dict(lineage or {}), "lineage")
    (tmp / "requirements.txt").write_text(requirements_txt(requirements, flavor=flavor.name))
    (tmp / "Dockerfile").write_text(
        dockerfile(
            flavor=flavor.name,
            python_version=python,
            modelcycle_version=version,
            requirements=requirements,
            code=needs_trust,
        )
    )
    meta["files"] = {
        p.relative_to(tmp).as_posix(): str(HashInfo(ALGORITHM, hash_file(p)))
        for p in sorted(tmp.rglob("*"))
        if p.is_file()
    }
    (tmp / MANIFEST).write_text(toml_writer.dumps(meta), encoding="utf-8")


def _toml_values(value: Any, what: str) -> Any:
    """``value`` with numpy scalars made plain; `UsageError` for what TOML cannot hold."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool | int | float | dt.date):
        return value
    if isinstance(value, Mapping):
        return {str(k): _toml_values(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_toml_values(v, what) for v in value]
    raise UsageError(
        f"{what} holds a {type(value).__name__}, which model.toml cannot store: {value!r}",
        hint="use numbers, strings, booleans, dates, lists and dicts",
    )


def _fsync_tree(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        if path.is_dir():
            _fsync_dir(path)
        else:
            with path.open("rb") as f:
                os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, target: Path) -> None:
    try:
        # replaces an empty folder, fails on a non-empty one: never merges two packages
        os.rename(tmp, target)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise ConflictError(
                f"{target} appeared while the package was being written",
                hint="save the package to a new folder",
            ) from e
        raise
    _fsync_dir(target.parent)


def _modelcycle_version() -> str:
    try:
        return importlib.metadata.version("modelcycle")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
