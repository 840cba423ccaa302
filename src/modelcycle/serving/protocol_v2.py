"""The Open Inference Protocol (KServe v2): typed tensors, as Triton's clients send them.

Inputs are ``{"name", "datatype", "shape", "data"}`` with ``data`` in row-major order
(flat, or nested as the shape), or raw bytes after the JSON header (the binary tensor
extension: ``Inference-Header-Content-Length`` and ``parameters.binary_data_size``).

A model with named columns takes one input per column, named after it, each of shape
``[rows]`` (``[rows, 1]`` is accepted too); a model whose columns are all numeric also
takes one 2-D input ``[rows, columns]`` under any other name, columns in signature order.
A tensor model takes one input (its metadata calls it ``input``).

Outputs: ``prediction`` (``[rows]``) and, for classifiers, ``probabilities``
(``[rows, classes]``, FP64). Ask for some with ``outputs``; each comes back as JSON data,
or as binary data when ``parameters.binary_data`` (per output) or
``parameters.binary_data_output`` (for all) is true.

A request that is not a well-formed tensor request (unknown datatype, data that does not
fill the shape) is a 400; tensors that do not fit the model's signature are a 422.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelcycle.flavors.signature import Spec
from modelcycle.serving.errors import MalformedRequest, UnsupportedMediaType
from modelcycle.serving.http import JSON
from modelcycle.serving.protocol import (
    OCTETS,
    Decoded,
    Encoded,
    Headers,
    dumps,
    is_json,
    jsonable,
    loads,
    media_type,
)
from modelcycle.serving.schema import ColumnsSchema, InputSchema, TensorSchema
from modelcycle.serving.values import Prediction

HEADER_LENGTH = b"inference-header-content-length"
PREDICTION = "prediction"
PROBABILITIES = "probabilities"
TENSOR_INPUT = "input"
_SHAPE = 'send {"inputs": [{"name": ..., "datatype": ..., "shape": [...], "data": [...]}]}'

NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_NAME = {dtype.name: name for name, dtype in NUMPY.items() if name != "BYTES"}


def datatype(signature_dtype: str) -> str:
    """The v2 datatype for a signature dtype (text and everything else is BYTES)."""
    return _BY_NAME.get(signature_dtype, "BYTES")


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    return _BY_NAME.get(array.dtype.name, "BYTES")


class V2:
    label = "v2"
    log_name = "v2"

    def decode(self, body: bytes, headers: Headers, schema: InputSchema) -> Decoded:
        header, binary = _split(body, headers)
        request = loads(header)
        if not isinstance(request, dict):
            raise MalformedRequest("the inference request must be a JSON object", hint=_SHAPE)
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise MalformedRequest('"inputs" must be a non-empty list of tensors', hint=_SHAPE)
        tensors: dict[str, np.ndarray[Any, Any]] = {}
        offset = 0
        for i, spec in enumerate(inputs):
            name, array, used = _tensor(i, spec, binary, offset)
            if name in tensors:
                raise MalformedRequest(f"input {name!r} is given twice", hint=_SHAPE)
            tensors[name] = array
            offset += used
        if offset != len(binary):
            raise MalformedRequest(
                f"the body holds {len(binary) - offset} bytes that no input claims", hint=_SHAPE
            )
        outputs, binary_all = _requested_outputs(request)
        want_proba = outputs is None or PROBABILITIES in outputs
        options = {"id": request.get("id"), "outputs": outputs, "binary_all": binary_all}
        return Decoded(schema.from_tensors(tensors), want_proba, options)

    def encode(
        self,
        served_name: str,
        version: int,
        prediction: Prediction,
        decoded: Decoded,
        request_id: str,
        classes: list[Any] | None,
    ) -> Encoded:
        requested: dict[str, bool] | None = decoded.options.get("outputs")
        all_binary = bool(decoded.options.get("binary_all"))
        available = {PREDICTION: prediction.values}
        if prediction.probabilities is not None:
            available[PROBABILITIES] = prediction.probabilities
        if requested is not None:
            unknown = sorted(set(requested) - set(available))
            if unknown:
                raise MalformedRequest(
                    f"the model has no output {', '.join(map(repr, unknown))}",
                    hint=f"its outputs: {', '.join(available)}",
                )
        outputs, blobs = [], []
        for name, array in available.items():
            if requested is not None and name not in requested:
                continue
            binary = requested[name] if requested is not None else all_binary
            out: dict[str, Any] = {
                "name": name,
                "datatype": datatype_of(array),
                "shape": list(array.shape),
            }
            if binary:
                raw = _to_bytes(array)
                out["parameters"] = {"binary_data_size": len(raw)}
                blobs.append(raw)
            else:
                out["data"] = jsonable(np.ascontiguousarray(array).reshape(-1))
            outputs.append(out)
        response = {
            "model_name": served_name,
            "model_version": str(version),
            "id": decoded.options.get("id") or request_id,
            "outputs": outputs,
        }
        header = dumps(response)
        if not blobs:
            return Encoded(header)
        return Encoded(
            header + b"".join(blobs), OCTETS, [(HEADER_LENGTH, str(len(header)).encode())]
        )


def _split(body: bytes, headers: Headers) -> tuple[bytes, bytes]:
    declared = headers.get(HEADER_LENGTH)
    if declared is None:
        media = media_type(headers)
        if not is_json(media):
            raise UnsupportedMediaType(
                f"inference requests are JSON, not {media.decode('latin-1')!r}",
                hint="send application/json, or binary tensors with an "
                "Inference-Header-Content-Length header",
            )
        return body, b""
    media = media_type(headers)
    if media not in (b"", JSON, OCTETS):
        raise UnsupportedMediaType(
            f"binary inference requests are application/octet-stream, not "
            f"{media.decode('latin-1')!r}",
            hint="",
        )
    try:
        n = int(declared)
    except ValueError:
        raise MalformedRequest("Inference-Header-Content-Length is not a number", hint="") from None
    if not 0 < n <= len(body):
        raise MalformedRequest(
            f"Inference-Header-Content-Length is {n} but the body has {len(body)} bytes", hint=""
        )
    return body[:n], body[n:]


def _tensor(i: int, spec: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray[Any, Any], int]:
    if not isinstance(spec, dict):
        raise MalformedRequest(f"input {i} is not an object", hint=_SHAPE)
    name, dt, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or not name:
        raise MalformedRequest(f"input {i} has no name", hint=_SHAPE)
    if dt not in NUMPY:
        raise MalformedRequest(
            f"input {name!r} has datatype {dt!r}", hint=f"use one of {', '.join(NUMPY)}"
        )
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise MalformedRequest(
            f"input {name!r} has shape {shape!r}; it must be a list of sizes >= 0", hint=_SHAPE
        )
    count = math.prod(shape)
    parameters = spec.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise MalformedRequest(
                f"input {name!r} claims {size!r} binary bytes the body does not hold", hint=""
            )
        return name, _from_bytes(name, dt, shape, count, binary[offset : offset + size]), size
    if "data" not in spec:
        raise MalformedRequest(f"input {name!r} has no data", hint=_SHAPE)
    return name, _from_json(name, dt, shape, count, spec["data"]), 0


def _from_json(name: str, dt: str, shape: list[int], count: int, data: Any) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        data = [data]
    try:
        array = np.array(data, dtype=object if dt == "BYTES" else None)
    except ValueError:
        raise MalformedRequest(f"input {name!r}: its data is nested unevenly", hint="") from None
    if array.size != count:
        raise MalformedRequest(
            f"input {name!r} has {array.size} values, but shape {shape} needs {count}", hint=""
        )
    kind = array.dtype.kind
    flat = array.reshape(-1)
    if dt == "BYTES":
        if not all(isinstance(v, str | bytes) for v in flat.tolist()):
            raise MalformedRequest(f"input {name!r} is BYTES but holds non-strings", hint="")
    elif dt == "BOOL":
        if count and kind != "b":
            raise MalformedRequest(f"input {name!r} is BOOL but holds non-booleans", hint="")
    else:
        numeric = kind in "iu" or (kind == "f" and dt.startswith("FP"))
        if count and (not numeric or (array.ndim == 1 and any(v.__class__ is bool for v in data))):
            raise MalformedRequest(
                f"input {name!r} is {dt} but holds values that are not "
                f"{'numbers' if dt.startswith('FP') else 'whole numbers'}",
                hint="",
            )
        target = NUMPY[dt]
        if count and target.kind in "iu":
            info = np.iinfo(target)
            if array.min() < info.min or array.max() > info.max:
                raise MalformedRequest(f"input {name!r} holds values out of {dt}'s range", hint="")
        return array.astype(target).reshape(shape)
    return array.reshape(shape)


def _from_bytes(
    name: str, dt: str, shape: list[int], count: int, raw: bytes
) -> np.ndarray[Any, Any]:
    if dt == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise MalformedRequest(f"input {name!r}: truncated BYTES element", hint="")
            (n,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + n > len(raw):
                raise MalformedRequest(f"input {name!r}: truncated BYTES element", hint="")
            items.append(raw[pos : pos + n])
            pos += n
        if len(items) != count:
            raise MalformedRequest(
                f"input {name!r} has {len(items)} elements, but shape {shape} needs {count}",
                hint="",
            )
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = NUMPY[dt]
    if len(raw) != count * dtype.itemsize:
        raise MalformedRequest(
            f"input {name!r} has {len(raw)} bytes, but {count} {dt} values take "
            f"{count * dtype.itemsize}",
            hint="",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _to_bytes(array: np.ndarray[Any, Any]) -> bytes:
    if datatype_of(array) != "BYTES":
        return np.ascontiguousarray(array).tobytes()
    parts = []
    for value in array.reshape(-1).tolist():
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def _requested_outputs(request: Mapping[str, Any]) -> tuple[dict[str, bool] | None, bool]:
    """Output name -> whether it goes back as binary (None: every output), and whether
    every output goes back as binary."""
    parameters = request.get("parameters") or {}
    binary_all = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    outputs = request.get("outputs")
    if outputs is None:
        return None, binary_all
    if not isinstance(outputs, list):
        raise MalformedRequest('"outputs" must be a list of {"name": ...}', hint=_SHAPE)
    found: dict[str, bool] = {}
    for out in outputs:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise MalformedRequest('each requested output needs a "name"', hint=_SHAPE)
        params = out.get("parameters") or {}
        binary = isinstance(params, dict) and params.get("binary_data") is True
        found[out["name"]] = binary or binary_all
    return found, binary_all


def metadata(
    served_name: str,
    versions: list[int],
    schema: InputSchema,
    flavor: str,
    output: Spec | None,
    classes: list[Any] | None,
) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs as the decoder takes them, outputs as encoded."""
    inputs: list[dict[str, Any]] = []
    if isinstance(schema, ColumnsSchema):
        inputs = [
            {
                "name": str(s.name),
                "datatype": datatype(s.dtype),
                "shape": [-1] if s.shape is None else [-1, *s.shape[1:]],
            }
            for s in schema.specs
        ]
    elif isinstance(schema, TensorSchema):
        shape = [-1] if schema.spec.shape is None else list(schema.spec.shape)
        inputs = [{"name": TENSOR_INPUT, "datatype": datatype(schema.spec.dtype), "shape": shape}]
    out_type = "FP64" if output is None else datatype(output.dtype)
    outputs: list[dict[str, Any]] = [{"name": PREDICTION, "datatype": out_type, "shape": [-1]}]
    if classes is not None:
        outputs.append({"name": PROBABILITIES, "datatype": "FP64", "shape": [-1, len(classes)]})
    return {
        "name": served_name,
        "versions": [str(v) for v in versions],
        "platform": f"modelcycle_{flavor}",
        "inputs": inputs,
        "outputs": outputs,
    }
