"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``/health``, ``/version``.

Request bodies are those of ``mlflow models serve``: JSON with exactly one of
``dataframe_split`` (``{"columns": [...], "data": [[...]]}``), ``dataframe_records``
(a list of records), ``instances`` or ``inputs`` (rows, records or a dict of columns),
plus an optional ``params`` (ignored); or ``text/csv`` with a header row. The answer is
``{"predictions": [...]}``.

With several models served, ``/invocations`` answers for the one named in the
``X-Modelcycle-Model`` header or the ``?model=NAME`` query parameter, else for the first
one served (the first ref on the command line, or the deployment's endpoint).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from modelcycle.serving.errors import MalformedRequest, UnsupportedMediaType
from modelcycle.serving.protocol import (
    CSV,
    Decoded,
    Encoded,
    Headers,
    dumps,
    is_json,
    jsonable,
    loads,
    media_type,
)
from modelcycle.serving.schema import FLOATS, INTS, ColumnsSchema, InputSchema, TensorSchema
from modelcycle.serving.values import ModelInput, Prediction

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MODEL_HEADER = b"x-modelcycle-model"
_SHAPE = "send JSON with one of dataframe_split, dataframe_records, instances or inputs"


class MLflow:
    label = "invocations"
    log_name = "mlflow"

    def decode(self, body: bytes, headers: Headers, schema: InputSchema) -> Decoded:
        media = media_type(headers)
        if media == CSV:
            return Decoded(_from_csv(body, schema))
        if not is_json(media):
            raise UnsupportedMediaType(
                f"/invocations reads application/json or text/csv, not {media.decode('latin-1')!r}",
                hint="set Content-Type to application/json or text/csv",
            )
        payload = loads(body)
        if not isinstance(payload, dict):
            raise MalformedRequest("the body must be a JSON object", hint=_SHAPE)
        key = _key(payload)
        data = payload[key]
        if key == "dataframe_split":
            return Decoded(_from_split(data, schema))
        if key == "dataframe_records":
            return Decoded(schema.from_records(data))
        if isinstance(data, dict):
            return Decoded(schema.from_columns(data))
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return Decoded(schema.from_records(data))
        return Decoded(schema.from_rows(data))

    def encode(
        self,
        served_name: str,
        version: int,
        prediction: Prediction,
        decoded: Decoded,
        request_id: str,
        classes: list[Any] | None,
    ) -> Encoded:
        return Encoded(dumps({"predictions": jsonable(prediction.values)}))


def _key(payload: dict[str, Any]) -> str:
    """The one input key of an MLflow body."""
    if len(payload) == 1:
        (key,) = payload
        if key in KEYS:
            return str(key)
    given = [k for k in KEYS if k in payload]
    if len(given) != 1 or set(payload) - {*KEYS, "params"}:
        found = ", ".join(repr(k) for k in sorted(payload)) or "nothing"
        raise MalformedRequest(f"the body has {found}", hint=_SHAPE)
    return given[0]


def _from_split(data: Any, schema: InputSchema) -> ModelInput:
    if not isinstance(data, dict) or "data" not in data:
        raise MalformedRequest(
            'dataframe_split must be {"columns": [...], "data": [[...]]}', hint=_SHAPE
        )
    columns = data.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        raise MalformedRequest("dataframe_split columns must be a list of names", hint=_SHAPE)
    return schema.from_rows(data["data"], columns)


def _from_csv(body: bytes, schema: InputSchema) -> ModelInput:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MalformedRequest("the CSV body is not UTF-8 text", hint="") from e
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        raise MalformedRequest("the CSV needs a header row and at least one row", hint="")
    header, cells = rows[0], rows[1:]
    if isinstance(schema, TensorSchema):
        return schema.from_rows([[_number(c) for c in row] for row in cells])
    dtypes = (
        {str(s.name): s.dtype for s in schema.specs} if isinstance(schema, ColumnsSchema) else {}
    )
    typed = [
        [_cell(c, dtypes.get(name)) for name, c in zip(header, row, strict=False)] for row in cells
    ]
    for i, row in enumerate(cells):
        if len(row) != len(header):
            raise MalformedRequest(
                f"CSV row {i + 1} has {len(row)} cells; the header has {len(header)}", hint=""
            )
    return schema.from_rows(typed, header)


def _cell(text: str, dtype: str | None) -> Any:
    """A CSV cell as the JSON value it stands for, judged by the column's dtype."""
    if text == "":
        return None
    if dtype in INTS or dtype in FLOATS or dtype is None:
        number = _number(text)
        if dtype is None or not isinstance(number, str):
            return number
    if dtype == "bool":
        low = text.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
    return text


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return None if math.isnan(value) else value  # "nan" is a missing value, as ""
