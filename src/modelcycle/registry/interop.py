"""Models in and out of other tools' formats: ONNX export, MLflow import.

``export_model`` writes a registered version as one ONNX file (see
`modelcycle.flavors.onnx`). ``import_mlflow`` reads an MLflow model folder (see
`modelcycle.flavors.mlflow_format`), logs the model from a run in the ``mlflow-import``
experiment, saved in modelcycle's own safe formats, and registers it as the next version of
a model. Everything that can fail is checked before the registry is touched: a failed import
leaves no version behind (at most a run marked failed).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ConflictError, InputDataError, UsageError
from modelcycle.core.text import suggest
from modelcycle.data.refs import check_name
from modelcycle.store.registry import ModelVersionRow

if TYPE_CHECKING:
    from modelcycle.registry import RegistryService

FORMATS = ("onnx",)
EXPERIMENT = "mlflow-import"
MODEL_NAME = "model"


def export_model(
    registry: RegistryService,
    ref: str,
    dest: str | os.PathLike[str],
    fmt: str = "onnx",
    *,
    trusted: Sequence[str] = (),
) -> Path:
    """Write version ``ref`` in format ``fmt`` to ``dest``; return the file written.

    ``dest`` is a file, or an existing folder to write ``NAME-vN.onnx`` into; an existing
    file is not replaced. The file is written under a temporary name and renamed, so it is
    whole or absent. ``trusted`` is what loading the version needs (see ``model show``).
    The graph records the version's ref and signature in its ``metadata_props``.
    """
    if fmt not in FORMATS:
        raise UsageError(
            f"unknown export format {fmt!r}{suggest(fmt, FORMATS)}",
            hint=f"formats: {', '.join(FORMATS)}",
        )
    from modelcycle.flavors.onnx import to_onnx

    version = registry.resolve(ref)
    target = Path(dest).expanduser()
    if target.is_dir():
        target = target / f"{version.model}-v{version.version}.{fmt}"
    if target.exists():
        raise ConflictError(
            f"{target} exists already", hint="choose another file name, or remove it first"
        )
    if not target.parent.is_dir():
        raise UsageError(
            f"{target.parent} is not a folder", hint="create it first, or choose another path"
        )
    loaded = registry.load(version.ref, trusted=list(trusted))
    data: bytes = to_onnx(loaded, ref=version.ref).SerializeToString()
    _write_atomically(target, data)
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with tmp.open("xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # a hard link fails if the target appeared meanwhile: never replaces a file
        os.link(tmp, target)
    except FileExistsError as e:
        raise ConflictError(
            f"{target} appeared while the model was being exported",
            hint="choose another file name",
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


def import_mlflow(
    registry: RegistryService,
    path: str | os.PathLike[str],
    name: str,
    *,
    trusted: bool = False,
    description: str | None = None,
) -> ModelVersionRow:
    """Register the model of the MLflow model folder ``path`` as the next version of ``name``.

    A pickled scikit-learn model is unpickled only with ``trusted=True`` (unpickling runs the
    code the file holds). The model is stored with modelcycle's own formats (skops, XGBoost
    UBJSON), so loading the new version needs no trust for what scikit-learn, NumPy, SciPy
    and XGBoost define. The run that logs it (experiment ``mlflow-import``) is tagged with
    the source folder and the MLflow run id, and keeps ``MLmodel`` and the requirements files
    as artifacts under ``mlflow/``.
    """
    from modelcycle.flavors.mlflow_format import (
        METADATA_FILES,
        load_mlflow_model,
        read_mlflow_model,
    )

    check_name(name, "model name")
    source = read_mlflow_model(path)
    model = load_mlflow_model(source, trusted=trusted)
    example = source.input_example()
    _check_predicts(model, example, source.path)
    tags = {
        "mlflow.source": str(source.path.resolve()),
        "mlflow.flavor": source.flavor,
        "mlflow.trusted": str(trusted).lower(),
    }
    if source.run_id:
        tags["mlflow.run_id"] = source.run_id
    if source.mlflow_version:
        tags["mlflow.version"] = source.mlflow_version
    with registry.runs.start_run(EXPERIMENT, name=f"import-{name}", tags=tags) as run:
        for file in METADATA_FILES:
            if (source.path / file).is_file():
                run.log_artifact(str(source.path / file), "mlflow")
        info = run.log_model(model, MODEL_NAME, input_example=example, signature=source.signature)
        _check_loadable(info.needs_trust)
        run.flush()
        origin = f"run {source.run_id}" if source.run_id else str(source.path)
        return registry.register(
            run.id,
            name,
            path=f"models/{MODEL_NAME}",
            description=description or f"imported from the MLflow model of {origin}",
        )


def _check_predicts(model: Any, example: Any, folder: Path) -> None:
    if example is None:
        return
    from modelcycle.flavors.registry import flavor_for

    try:
        flavor_for(model).predict(model, example)
    except Exception as e:
        raise InputDataError(
            f"the MLflow model cannot predict on its own input example ({folder}): "
            f"{type(e).__name__}: {e}",
            hint="the folder's input example does not fit its model, or the model needs other "
            "library versions than the installed ones (see the folder's requirements.txt)",
        ) from e


def _check_loadable(needs_trust: Sequence[str]) -> None:
    scripts = [n for n in needs_trust if n.startswith("__main__.")]
    if scripts:
        raise UsageError(
            f"the model uses classes defined in the script that trained it ({', '.join(scripts)}), "
            "which no other process can import",
            hint="move those classes into an importable module, save the model with MLflow "
            "again, and import that",
        )
