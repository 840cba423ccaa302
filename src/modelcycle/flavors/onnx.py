"""ONNX models: run with ONNX Runtime, and made from scikit-learn and PyTorch models.

An ONNX model is a graph of standard operators: loading one runs no Python code the user has
not trusted, so the flavor needs no ``trusted`` names. The package stores ``model.onnx`` and,
in its flavor metadata, which graph output holds the predictions and which the class
probabilities, plus the column order when the graph takes one tensor of a frame's columns.

`to_onnx` converts a loaded package: scikit-learn estimators and pipelines through skl2onnx
(float32 inputs built from the package's signature; probabilities as a tensor, not a list
of dicts), PyTorch modules through ``torch.onnx.export`` with a dynamic batch dimension. The
converted graph carries what it was made from in its ``metadata_props`` (``modelcycle.*``),
which the flavor reads back when such a graph is saved as a package.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelcycle.core.errors import InputDataError, ModelcycleError, UsageError
from modelcycle.flavors.base import (
    Flavor,
    framework_version,
    import_framework,
    loaded_module,
)
from modelcycle.flavors.inputs import tabular, to_numpy, to_pandas
from modelcycle.flavors.signature import Signature

if TYPE_CHECKING:
    from modelcycle.flavors.package import LoadedModel

FILE = "model.onnx"
EXTRA = "onnx"
#: flavors `to_onnx` converts (an onnx package is already ONNX)
CONVERTIBLE = ("sklearn", "pytorch", "onnx")
PREFIX = "modelcycle."
#: output names that hold class probabilities when the graph does not say
PROBABILITY_NAMES = ("probabilities", "output_probability")
# what graph inputs and outputs are called in the graphs `to_onnx` writes
TENSOR_INPUT = "input"
TORCH_OUTPUT = "output"

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
_NUMERIC = {
    "bool",
    *(f"int{n}" for n in (8, 16, 32, 64)),
    *(f"uint{n}" for n in (8, 16, 32, 64)),
    "float16",
    "float32",
    "float64",
}


@dataclass
class OnnxModel:
    """An ONNX Runtime session and how to feed it and read its outputs."""

    session: Any = field(repr=False)
    #: the file the session was loaded from (None for a graph converted in memory)
    path: Path | None
    prediction_output: str
    probability_output: str | None = None
    #: when the graph takes one tensor of a frame's columns: the columns, in order
    columns: tuple[str, ...] | None = None
    #: a ``[n, 1]`` prediction is returned as ``[n]`` (scikit-learn regressors)
    flatten: bool = False


class OnnxFlavor(Flavor):
    name = "onnx"
    extra = EXTRA
    modules = ("onnxruntime", "onnx", "numpy")

    def handles(self, model: Any) -> bool:
        onnx = loaded_module("onnx")
        return onnx is not None and isinstance(model, onnx.ModelProto)

    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        onnx = import_framework("onnx", EXTRA)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as e:
            raise UsageError(
                f"the ONNX model is not valid: {_first_line(e)}",
                hint="fix the graph or convert the model again",
            ) from e
        onnx.save_model(model, folder / FILE)
        return {
            "file": FILE,
            "onnx_version": framework_version("onnx"),
            "opset": _opset(model),
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            **_outputs_meta(model),
        }

    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        path = folder / str(meta.get("file", FILE))
        return _model(_session(str(path), str(path)), meta, path)

    def native(self, model: Any) -> Any:
        return model.session

    def predict(self, model: Any, data: Any) -> Any:
        out = _run(model, model.prediction_output, data)
        if model.flatten and out.ndim == 2 and out.shape[1] == 1:
            return out.ravel()
        return out

    def has_predict_proba(self, model: Any) -> bool:
        return model.probability_output is not None

    def predict_proba(self, model: Any, data: Any) -> Any:
        if model.probability_output is None:
            return super().predict_proba(model, data)
        return _run(model, model.probability_output, data)


def embedded_signature(model: Any) -> Signature | None:
    """The signature `to_onnx` embedded in an ONNX graph (``metadata_props``), if any."""
    text = _props(model).get(PREFIX + "signature")
    return None if not text else Signature.from_dict(json.loads(text))


# -- running -------------------------------------------------------------------------------


def _session(source: str | bytes, what: str) -> Any:
    ort = import_framework("onnxruntime", EXTRA)
    try:
        return ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise InputDataError(
            f"ONNX Runtime cannot load {what}: {_first_line(e)}",
            hint="the file is damaged, or needs a newer onnxruntime: "
            f"pip install -U 'modelcycle[{EXTRA}]'",
        ) from e


def _model(session: Any, meta: Mapping[str, Any], path: Path | None) -> OnnxModel:
    outputs = [o.name for o in session.get_outputs()]
    prediction = str(meta.get("prediction_output") or outputs[0])
    probability = meta.get("probability_output")
    missing = [n for n in (prediction, probability) if n and n not in outputs]
    if missing:
        raise InputDataError(
            f"model.toml names graph output(s) {missing} that the graph does not have "
            f"(it has {outputs})",
            hint="the package is damaged; save the model again",
        )
    columns = meta.get("columns")
    return OnnxModel(
        session=session,
        path=path,
        prediction_output=prediction,
        probability_output=str(probability) if probability else None,
        columns=tuple(str(c) for c in columns) if columns else None,
        flatten=bool(meta.get("flatten", False)),
    )


def _run(model: OnnxModel, output: str, data: Any) -> Any:
    feeds = _feeds(model, data)
    try:
        return np.asarray(model.session.run([output], feeds)[0])
    except Exception as e:
        expected = ", ".join(f"{i.name} ({i.type} {i.shape})" for i in model.session.get_inputs())
        raise InputDataError(
            f"ONNX Runtime refused the input: {_first_line(e)}", hint=f"the graph takes {expected}"
        ) from e


def _feeds(model: OnnxModel, data: Any) -> dict[str, Any]:
    inputs = model.session.get_inputs()
    if len(inputs) == 1:
        spec = inputs[0]
        array = to_numpy(tabular(data, list(model.columns)) if model.columns is not None else data)
        return {spec.name: _cast(array, spec.type, spec.name)}
    frame = to_pandas(data)
    missing = [i.name for i in inputs if i.name not in frame.columns]
    if missing:
        raise InputDataError(
            f"input is missing column(s) {', '.join(map(repr, missing))}",
            hint=f"the ONNX graph takes the columns {[i.name for i in inputs]}",
        )
    feeds = {}
    for spec in inputs:
        column = frame[spec.name].to_numpy()
        if len(spec.shape) == 2:
            column = column.reshape(-1, 1)
        feeds[spec.name] = _cast(column, spec.type, spec.name)
    return feeds


def _cast(array: np.ndarray[Any, Any], ort_type: str, name: str) -> np.ndarray[Any, Any]:
    dtype = _ORT_DTYPES.get(ort_type)
    if dtype is None:
        raise UsageError(
            f"graph input {name!r} is a {ort_type}, which modelcycle cannot feed",
            hint=f"feed the graph with onnxruntime directly; modelcycle feeds {sorted(_ORT_DTYPES)}",
        )
    if dtype is np.object_:
        return np.asarray(array).astype(str).astype(object)
    try:
        return np.ascontiguousarray(array, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise InputDataError(
            f"input {name!r} cannot be read as {np.dtype(dtype).name}: {e}",
            hint="send numbers for numeric inputs",
        ) from e


# -- metadata ------------------------------------------------------------------------------


def _props(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _opset(model: Any) -> int:
    return max(
        (int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0
    )


def _outputs_meta(model: Any) -> dict[str, Any]:
    """Flavor metadata for the graph's outputs: from `to_onnx`'s props, else from names."""
    props = _props(model)
    outputs = [o.name for o in model.graph.output]
    meta: dict[str, Any] = {
        "inputs": [i.name for i in model.graph.input],
        "outputs": outputs,
        "prediction_output": props.get(PREFIX + "prediction_output") or outputs[0],
        "flatten": props.get(PREFIX + "flatten") == "true",
    }
    probability = props.get(PREFIX + "probability_output")
    if probability is None:
        tensors = {o.name for o in model.graph.output if o.type.HasField("tensor_type")}
        probability = next((n for n in PROBABILITY_NAMES if n in tensors), None)
    if probability:
        meta["probability_output"] = probability
    if props.get(PREFIX + "columns"):
        meta["columns"] = json.loads(props[PREFIX + "columns"])
    for key in ("source_flavor", "ref"):
        if props.get(PREFIX + key):
            meta[key] = props[PREFIX + key]
    return meta


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- converting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Converted:
    model: Any  # onnx.ModelProto
    prediction_output: str
    probability_output: str | None = None
    columns: tuple[str, ...] | None = None
    flatten: bool = False


def to_onnx(loaded: LoadedModel, *, ref: str | None = None, check: bool = True) -> Any:
    """An ``onnx.ModelProto`` that computes what ``loaded`` predicts.

    With ``check`` (the default), the graph is run on the package's input example and its
    predictions (or probabilities) compared with the model's own. `UsageError` for flavors
    and models the converters do not support.
    """
    flavor = loaded.flavor.name
    if flavor not in CONVERTIBLE:
        raise UsageError(
            f"ONNX export does not support the {flavor} flavor",
            hint=f"ONNX export supports the flavors {', '.join(CONVERTIBLE)}",
            flavor=flavor,
        )
    example = loaded.input_example()
    if flavor == "onnx":  # already ONNX: the graph as it was saved
        onnx = import_framework("onnx", EXTRA)
        return onnx.load(str(loaded.model.path))
    if flavor == "sklearn":
        converted = _from_sklearn(loaded.native, loaded.signature, example)
    else:
        converted = _from_torch(loaded.native, loaded.signature, example)
    props = {
        "source_flavor": flavor,
        "prediction_output": converted.prediction_output,
        "flatten": "true" if converted.flatten else "false",
    }
    if ref is not None:
        props["ref"] = ref
    if converted.probability_output:
        props["probability_output"] = converted.probability_output
    if converted.columns is not None:
        props["columns"] = json.dumps(list(converted.columns))
    if loaded.signature is not None:
        props["signature"] = json.dumps(loaded.signature.to_dict())
    onnx = import_framework("onnx", EXTRA)
    onnx.helper.set_model_props(
        converted.model, {**_props(converted.model), **{PREFIX + k: v for k, v in props.items()}}
    )
    if check and example is not None:
        _check(converted.model, loaded, example)
    return converted.model


def _check(model: Any, loaded: LoadedModel, example: Any) -> None:
    """Raise when the graph does not reproduce ``loaded`` on ``example``."""
    session = _session(model.SerializeToString(), "the converted graph")
    runnable = _model(session, _outputs_meta(model), None)
    flavor = OnnxFlavor()
    # Probabilities when there are some: a float32 graph may break a tie between two classes
    # the other way, which changes a label but not the probabilities.
    if flavor.has_predict_proba(runnable) and loaded.has_predict_proba:
        what, got, want = (
            "probabilities",
            flavor.predict_proba(runnable, example),
            loaded.predict_proba(example),
        )
    else:
        what, got, want = "predictions", flavor.predict(runnable, example), loaded.predict(example)
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        same = False
    elif want.dtype.kind in "fc":
        same = bool(np.allclose(got, want, rtol=1e-3, atol=1e-4))
    else:
        same = bool(np.array_equal(got, want))
    if not same:
        raise ModelcycleError(
            f"the ONNX graph's {what} differ from the model's own on the input example "
            f"(shape {got.shape} vs {want.shape})",
            hint="the converter does not reproduce this model; serve the package itself",
        )


def _from_sklearn(model: Any, signature: Signature | None, example: Any) -> _Converted:
    skl2onnx = import_framework("skl2onnx", EXTRA)
    types = import_framework("skl2onnx.common.data_types", EXTRA)
    base = import_framework("sklearn.base", None)
    initial, columns = _initial_types(model, signature, types)
    options = {"zipmap": False} if base.is_classifier(model) else None
    try:
        graph = skl2onnx.convert_sklearn(model, initial_types=initial, options=options)
    except Exception as e:
        raise UsageError(
            f"skl2onnx cannot convert this {type(model).__name__}: {_first_line(e)}",
            hint="ONNX export supports the scikit-learn estimators and transformers skl2onnx "
            "has converters for; custom steps have none",
        ) from e
    outputs = [o.name for o in graph.graph.output]
    probability = next((n for n in PROBABILITY_NAMES if n in outputs[1:]), None)
    flatten = _flattens(graph.graph.output[0])
    if flatten and example is not None:
        flatten = np.ndim(model.predict(tabular(example, _feature_names(model)))) == 1
    return _Converted(graph, outputs[0], probability, columns, flatten)


def _initial_types(
    model: Any, signature: Signature | None, types: Any
) -> tuple[list[tuple[str, Any]], tuple[str, ...] | None]:
    """skl2onnx's input types, and the column order when one tensor takes a frame's columns."""
    names = _feature_names(model)
    if signature is not None and signature.kind == "columns":
        dtypes = {s.name: s.dtype for s in signature.inputs}
        names = names or [str(s.name) for s in signature.inputs]
    elif signature is not None and signature.inputs:
        shape = signature.inputs[0].shape
        width = shape[1] if shape is not None and len(shape) == 2 else None
        return [(TENSOR_INPUT, types.FloatTensorType([None, width]))], None
    else:
        dtypes = {}
    if names is None:
        width = getattr(model, "n_features_in_", None)
        if width is None:
            raise UsageError(
                f"cannot tell what this {type(model).__name__} takes: the package has no "
                "signature and the model no n_features_in_",
                hint="log the model again with an input_example",
            )
        return [(TENSOR_INPUT, types.FloatTensorType([None, int(width)]))], None
    kinds = {n: dtypes.get(n, "float64") for n in names}
    if all(k in _NUMERIC for k in kinds.values()) and not _selects_columns(model):
        return [(TENSOR_INPUT, types.FloatTensorType([None, len(names)]))], tuple(names)
    # One input per column: strings stay strings, and ColumnTransformer selects by name.
    per_column = []
    for name, kind in kinds.items():
        if kind in ("string", "category"):
            per_column.append((name, types.StringTensorType([None, 1])))
        elif kind.startswith(("int", "uint")):
            per_column.append((name, types.Int64TensorType([None, 1])))
        elif kind in _NUMERIC:
            per_column.append((name, types.FloatTensorType([None, 1])))
        else:
            raise UsageError(
                f"column {name!r} is {kind}, which ONNX export cannot take",
                hint="convert it to numbers or strings in the model's pipeline inputs",
            )
    return per_column, None


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _selects_columns(model: Any) -> bool:
    """True if the model or one of its steps is a ColumnTransformer."""
    parts = [model, *getattr(model, "get_params", lambda deep: {})(deep=True).values()]
    return any(type(p).__name__ == "ColumnTransformer" for p in parts)


def _flattens(output: Any) -> bool:
    dims = output.type.tensor_type.shape.dim
    return len(dims) == 2 and dims[1].dim_value == 1


def _from_torch(model: Any, signature: Signature | None, example: Any) -> _Converted:
    torch = import_framework("torch", "torch")
    if isinstance(model, torch.jit.ScriptModule):
        raise UsageError(
            "a TorchScript module cannot be exported to ONNX by torch.onnx's exporter",
            hint="log the torch.nn.Module itself (weights + class) and export that",
        )
    sample = _torch_sample(torch, model, signature, example)
    batch = torch.export.Dim("batch")
    try:
        with _quiet_torch_export():
            program = torch.onnx.export(
                model,
                (sample,),
                dynamo=True,
                verbose=False,
                input_names=[TENSOR_INPUT],
                output_names=[TORCH_OUTPUT],
                dynamic_shapes=({0: batch},),
            )
    except Exception as e:
        raise UsageError(
            f"torch.onnx cannot export {type(model).__name__}: {_first_line(e)}",
            hint="the module's forward must be traceable by torch.export "
            "(no data-dependent Python control flow)",
        ) from e
    graph = program.model_proto
    return _Converted(graph, graph.graph.output[0].name)


def _torch_sample(torch: Any, model: Any, signature: Signature | None, example: Any) -> Any:
    """A two-row input: one row would make torch.export fix the batch size at 1."""
    if example is not None:
        array = np.ascontiguousarray(to_numpy(example))
        array = np.concatenate([array, array])[:2] if len(array) < 2 else array[:2]
    elif signature is not None and signature.kind == "tensor" and signature.inputs:
        spec = signature.inputs[0]
        if spec.shape is None or any(d < 0 for d in spec.shape[1:]):
            raise UsageError(
                "the package's signature does not give the input's full shape",
                hint="log the model again with an input_example",
            )
        array = np.zeros((2, *spec.shape[1:]), dtype=spec.dtype)
    else:
        raise UsageError(
            "cannot tell what shape of tensor this PyTorch model takes: the package has no "
            "input example and no tensor signature",
            hint="log the model again with an input_example",
        )
    tensor = torch.from_numpy(array.copy())
    if tensor.is_floating_point():
        param = next(iter(model.parameters()), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else None
        tensor = tensor.to(dtype or torch.float32)
    return tensor


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    # The exporter logs a warning per optional torchvision operator it skips, and torch's
    # own pytree code warns about a deprecation inside torch: neither is the user's to act on.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
            yield
    finally:
        logger.setLevel(level)
