"""MLflow model folders (``MLmodel`` + model files), read without MLflow installed.

An MLflow model folder holds ``MLmodel`` (YAML: the flavors it can be loaded as, the
signature as JSON strings, where the input example is, the MLflow run that logged it), the
model files of each flavor, ``input_example.json`` and ``requirements.txt`` /
``conda.yaml``. Two flavors are read:

- ``sklearn``: ``pickled_model`` in the ``serialization_format`` ``skops`` (loaded through
  skops, with modelcycle's trust rules), or ``pickle`` / ``cloudpickle``. Unpickling runs
  whatever code the file holds, so a pickled model is loaded only with ``trusted=True``.
- ``xgboost``: the model in XGBoost's own format (``data``, as JSON, UBJSON or the old
  binary format) and its class (``model_class``), looked up in a fixed table. No trust needed.

A folder with only the ``python_function`` flavor is refused: its model is custom Python
code pickled with cloudpickle (a subclass of MLflow's ``PythonModel``), which needs MLflow to
unpickle and which modelcycle cannot store without pickle.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelcycle.core.errors import InputDataError, NotFoundError, UsageError
from modelcycle.flavors import trust
from modelcycle.flavors.base import import_framework
from modelcycle.flavors.signature import DEFAULT_OUTPUT, Signature, Spec
from modelcycle.flavors.xgboost import CLASSES as XGBOOST_CLASSES

MLMODEL = "MLmodel"
#: MLflow flavors modelcycle reads, in the order it prefers them
SUPPORTED = ("sklearn", "xgboost")
PICKLE_FORMATS = ("pickle", "cloudpickle")
TRUST_HINT = (
    "check where this MLflow model comes from; if you trust it, import it again with "
    "--trust (trusted=True in Python). modelcycle stores it in a safe format, so loading "
    "it from the registry afterwards needs no trust"
)
# MLflow column types -> modelcycle dtypes
_COLUMN_TYPES = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "binary": "bytes",
    "datetime": "datetime",
}
#: dtypes an input example's numbers are cast to (JSON has one number type)
_NUMPY_NAMES = {
    "bool",
    *(f"{k}{n}" for k in ("int", "uint") for n in (8, 16, 32, 64)),
    *("float16", "float32", "float64"),
}
# files of an MLflow folder worth keeping beside the imported model, for provenance
METADATA_FILES = (MLMODEL, "requirements.txt", "conda.yaml", "python_env.yaml")


@dataclass(frozen=True)
class MlflowModel:
    """What an MLflow model folder's ``MLmodel`` says (nothing is unpickled to read it)."""

    path: Path
    #: the MLflow flavor modelcycle reads the model from (one of `SUPPORTED`)
    flavor: str
    #: every flavor ``MLmodel`` lists
    flavors: tuple[str, ...]
    signature: Signature | None
    run_id: str | None
    mlflow_version: str | None
    requirements: tuple[str, ...]
    meta: dict[str, Any] = field(repr=False)

    @property
    def flavor_conf(self) -> dict[str, Any]:
        conf = self.meta["flavors"][self.flavor]
        return dict(conf) if isinstance(conf, Mapping) else {}

    @property
    def needs_trust(self) -> bool:
        """True if loading the model unpickles a file."""
        return (
            self.flavor == "sklearn"
            and self.flavor_conf.get("serialization_format", "cloudpickle") != "skops"
        )

    def input_example(self) -> Any:
        """The saved input example (a DataFrame, an array or a dict), or None."""
        return _input_example(self)


def read_mlflow_model(path: str | os.PathLike[str]) -> MlflowModel:
    """Read the ``MLmodel`` of the MLflow model folder ``path`` (or of the file itself)."""
    folder = Path(path).expanduser()
    if folder.is_file() and folder.name == MLMODEL:
        folder = folder.parent
    if not folder.exists():
        raise NotFoundError(f"{folder} does not exist", hint="check the path")
    mlmodel = folder / MLMODEL
    if not folder.is_dir() or not mlmodel.is_file():
        raise InputDataError(
            f"{folder} is not an MLflow model folder: it has no {MLMODEL} file",
            hint="point at the folder that holds MLmodel (for a logged model, the run's "
            "artifacts/<model name> folder)",
        )
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputDataError(
            f"{mlmodel} is not readable YAML: {e}", hint="the MLflow model folder is damaged"
        ) from e
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise InputDataError(
            f"{mlmodel} has no 'flavors' table", hint="the MLflow model folder is damaged"
        )
    flavors = tuple(str(f) for f in meta["flavors"])
    chosen = next((f for f in SUPPORTED if f in flavors), None)
    if chosen is None:
        raise _unsupported(mlmodel, meta["flavors"])
    return MlflowModel(
        path=folder,
        flavor=chosen,
        flavors=flavors,
        signature=convert_signature(meta.get("signature")),
        run_id=_text(meta.get("run_id")),
        mlflow_version=_text(meta.get("mlflow_version")),
        requirements=_requirements(folder / "requirements.txt"),
        meta=meta,
    )


def load_mlflow_model(model: MlflowModel, *, trusted: bool = False) -> Any:
    """The native model of an MLflow folder. Pickled models need ``trusted=True``."""
    if model.flavor == "sklearn":
        return _load_sklearn(model, trusted)
    return _load_xgboost(model)


def convert_signature(raw: Any) -> Signature | None:
    """modelcycle's `Signature` for an MLflow ``signature`` table, or None if it has none.

    Named columns and one unnamed tensor convert; a signature modelcycle cannot express
    (unnamed columns, several named tensors) gives None, and the signature is then inferred
    from the input example.
    """
    if not isinstance(raw, Mapping) or not raw.get("inputs"):
        return None
    inputs = _schema(raw["inputs"], "inputs")
    if not inputs:
        return None
    columns = all(s.get("type") != "tensor" for s in inputs)
    if columns:
        if any(not s.get("name") for s in inputs):
            return None
        specs = tuple(Spec(str(s["name"]), _column_dtype(s)) for s in inputs)
    else:
        if len(inputs) != 1 or inputs[0].get("type") != "tensor":
            return None
        specs = (_tensor_spec(inputs[0], None),)
    outputs: tuple[Spec, ...] = ()
    raw_outputs = _schema(raw.get("outputs"), "outputs") if raw.get("outputs") else []
    for i, s in enumerate(raw_outputs):
        name = str(s.get("name") or (DEFAULT_OUTPUT if len(raw_outputs) == 1 else f"output_{i}"))
        spec = _tensor_spec(s, name) if s.get("type") == "tensor" else Spec(name, _column_dtype(s))
        outputs = (*outputs, spec)
    return Signature("columns" if columns else "tensor", specs, outputs)


# -- reading ------------------------------------------------------------------------------


def _unsupported(mlmodel: Path, flavors: Mapping[str, Any]) -> UsageError:
    listed = ", ".join(flavors) or "none"
    pyfunc = flavors.get("python_function")
    if isinstance(pyfunc, Mapping) and set(flavors) == {"python_function"}:
        loader = pyfunc.get("loader_module", "?")
        return UsageError(
            f"{mlmodel} has only the python_function flavor (loader_module {loader}): its "
            "model is custom Python code pickled by MLflow, which needs MLflow to load and "
            "which modelcycle does not store as pickle",
            hint="save the underlying model with mlflow.sklearn or mlflow.xgboost and import "
            "that; or log it from Python with run.log_model (a class in an importable module "
            "is stored by import path + JSON parameters)",
            flavors=list(flavors),
        )
    return UsageError(
        f"{mlmodel} has no flavor modelcycle can import (it has: {listed})",
        hint=f"modelcycle imports the MLflow flavors {', '.join(SUPPORTED)}; for other "
        "frameworks, load the model with its library and log it with run.log_model",
        flavors=list(flavors),
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _requirements(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith(("#", "-")))


def _inside(model: MlflowModel, name: Any, what: str) -> Path:
    """``model.path / name``, refusing names that leave the folder."""
    if not isinstance(name, str) or not name:
        raise InputDataError(
            f"the {model.flavor} flavor in {model.path / MLMODEL} names no {what}",
            hint="the MLflow model folder is damaged",
        )
    root = model.path.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise InputDataError(
            f"{MLMODEL} names a {what} outside the model folder: {name}",
            hint="the MLflow model folder is damaged or was edited by hand",
        )
    if not path.is_file():
        raise InputDataError(
            f"the {what} {name} named in {MLMODEL} is missing from {model.path}",
            hint="copy the whole MLflow model folder",
        )
    return path


def _schema(text: Any, what: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError as e:
        raise InputDataError(
            f"the signature {what} in {MLMODEL} are not JSON: {e}",
            hint="the MLflow model folder is damaged",
        ) from e
    if not isinstance(value, list) or not all(isinstance(s, dict) for s in value):
        raise InputDataError(
            f"the signature {what} in {MLMODEL} are not a list of specs",
            hint="the MLflow model folder is damaged",
        )
    return value


def _column_dtype(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    # array, object, map and any (MLflow 2.10+) hold nested values
    return _COLUMN_TYPES.get(kind, "object") if isinstance(kind, str) else "object"


def _tensor_spec(spec: Mapping[str, Any], name: str | None) -> Spec:
    tensor = spec.get("tensor-spec") or {}
    try:
        dtype = np.dtype(str(tensor.get("dtype", "object")))
    except TypeError:
        dtype = np.dtype(object)
    shape = tensor.get("shape")
    return Spec(
        name,
        _numpy_dtype(dtype),
        None if shape is None else tuple(int(d) for d in shape),
    )


def _numpy_dtype(dtype: np.dtype[Any]) -> str:
    kinds = {"b": "bool", "U": "string", "S": "bytes", "M": "datetime", "m": "duration"}
    return dtype.name if dtype.kind in "iuf" else kinds.get(dtype.kind, "object")


def _input_example(model: MlflowModel) -> Any:
    info = model.meta.get("saved_input_example_info")
    info = info if isinstance(info, Mapping) else {}
    name = info.get("artifact_path", "input_example.json")
    path = model.path / str(name)
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputDataError(
            f"{path} is not readable JSON: {e}", hint="the MLflow model folder is damaged"
        ) from e
    kind = info.get("type")
    if isinstance(body, dict) and len(body) == 1:
        # the request forms MLflow's scoring server takes, which some versions saved
        body = body.get("dataframe_split", body.get("inputs", body))
    if kind == "dataframe" or (kind is None and _is_split_frame(body)):
        return _frame(body, model.signature)
    if kind == "ndarray" or (kind is None and isinstance(body, list)):
        array = np.asarray(body)
        sig = model.signature
        if sig is not None and sig.kind == "tensor" and sig.inputs[0].dtype in _NUMPY_NAMES:
            array = array.astype(sig.inputs[0].dtype)
        return array
    return None  # sparse matrices, JSON objects for custom models: no example


def _is_split_frame(body: Any) -> bool:
    return isinstance(body, dict) and "columns" in body and "data" in body


def _frame(body: Any, signature: Signature | None) -> Any:
    import pandas as pd

    if _is_split_frame(body):
        frame = pd.DataFrame(body["data"], columns=body["columns"])
    elif isinstance(body, list) and all(isinstance(r, dict) for r in body):
        frame = pd.DataFrame.from_records(body)
    else:
        raise InputDataError(
            "the MLflow input example is not a data frame in the split or records form",
            hint="the MLflow model folder is damaged",
        )
    if signature is not None and signature.kind == "columns":
        for spec in signature.inputs:
            # JSON has one number type: give columns back the dtype the model was fitted on
            if spec.name in frame.columns and spec.dtype in _NUMPY_NAMES:
                frame[spec.name] = frame[spec.name].astype(np.dtype(spec.dtype))
    return frame


# -- loading ------------------------------------------------------------------------------


def _load_sklearn(model: MlflowModel, trusted: bool) -> Any:
    conf = model.flavor_conf
    path = _inside(model, conf.get("pickled_model"), "model file")
    fmt = str(conf.get("serialization_format", "cloudpickle"))
    if fmt == "skops":
        native = _load_skops(path, trusted)
    elif fmt in PICKLE_FORMATS:
        if not trusted:
            raise UsageError(
                f"{path} is a scikit-learn model pickled with {fmt}; unpickling runs whatever "
                "code the file holds, so it is loaded only when you trust it",
                hint=TRUST_HINT,
                file=str(path),
            )
        code = conf.get("code")
        native = _unpickle(path, model.path / str(code) if code else None)
    else:
        raise UsageError(
            f"{model.path / MLMODEL} stores its scikit-learn model as {fmt!r}",
            hint="modelcycle reads the serialization formats skops, pickle and cloudpickle",
        )
    base = import_framework("sklearn.base", None)
    if not isinstance(native, base.BaseEstimator):
        raise InputDataError(
            f"{path} holds a {type(native).__module__}.{type(native).__qualname__}, not a "
            "scikit-learn estimator",
            hint="the MLflow model folder is damaged or was edited by hand",
        )
    return native


def _load_skops(path: Path, trusted: bool) -> Any:
    sio = import_framework("skops.io", None)
    try:
        names = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise InputDataError(
            f"{path} is not a readable skops file: {e}", hint="the MLflow model folder is damaged"
        ) from e
    refused = [] if trusted else [n for n in names if not trust.is_library_class(n)]
    if refused:
        raise UsageError(
            f"skops file {path} names code that is not trusted: {', '.join(sorted(refused))}; "
            "loading it would import and run it",
            hint=TRUST_HINT,
            untrusted=sorted(refused),
        )
    return sio.load(path, trusted=list(names))


def _unpickle(path: Path, code: Path | None) -> Any:
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except ModuleNotFoundError as e:
        where = (
            f"MLflow saved the model's own code in {code}: put that folder on PYTHONPATH"
            if code is not None
            else "the MLflow folder's requirements.txt lists what the model was saved with"
        )
        raise UsageError(
            f"the pickled model in {path} needs the module {e.name!r}, which is not installed",
            hint=f"install the package that provides {e.name!r}; {where}",
            missing=e.name,
        ) from e
    except Exception as e:
        raise InputDataError(
            f"cannot unpickle {path}: {type(e).__name__}: {e}",
            hint="the file is damaged, or was pickled by library versions that differ from "
            "the installed ones (see the MLflow folder's requirements.txt)",
        ) from e


def _load_xgboost(model: MlflowModel) -> Any:
    conf = model.flavor_conf
    path = _inside(model, conf.get("data"), "model file")
    module, _, cls_name = str(conf.get("model_class", "xgboost.core.Booster")).rpartition(".")
    if module.partition(".")[0] != "xgboost" or cls_name not in XGBOOST_CLASSES:
        raise UsageError(
            f"{model.path / MLMODEL} names the XGBoost model class {conf.get('model_class')!r}",
            hint=f"modelcycle reads the classes {', '.join(XGBOOST_CLASSES)} of xgboost",
        )
    xgb = import_framework("xgboost", "xgboost")
    native = getattr(xgb, cls_name)()
    try:
        native.load_model(str(path))
    except xgb.core.XGBoostError as e:
        raise InputDataError(
            f"XGBoost cannot read {path}: {str(e).strip().splitlines()[0]}",
            hint="the file is damaged, or in the old binary format this XGBoost no longer "
            "reads: save it as JSON or UBJSON with the XGBoost that wrote it",
        ) from e
    return native
