"""modelcycle's own protocol: ``POST /v1/models/{name}/predict``.

Request (JSON), one of::

    {"records": [{"age": 31, "plan": "pro"}, ...]}
    {"columns": {"age": [31, 45], "plan": ["pro", "free"]}}
    {"inputs": [[5.1, 3.5, 1.4, 0.2], ...]}          rows of values, in signature order
    [{"age": 31, "plan": "pro"}, ...]                 a bare list of records (or of rows)

with, optionally, ``"probabilities": false`` to leave class probabilities out.

Response::

    {"model": "churn", "version": 7, "predictions": [0, 1],
     "probabilities": [[0.9, 0.1], [0.2, 0.8]], "classes": [0, 1], "request_id": "…"}

``probabilities`` and ``classes`` are there for classifiers only.
"""

from __future__ import annotations

from typing import Any

from modelcycle.serving.errors import MalformedRequest
from modelcycle.serving.protocol import (
    Decoded,
    Encoded,
    Headers,
    dumps,
    jsonable,
    loads,
    require_json,
)
from modelcycle.serving.schema import InputSchema
from modelcycle.serving.values import Prediction

KEYS = ("records", "columns", "inputs")
_SHAPE = 'send {"records": [...]}, {"columns": {...}}, {"inputs": [[...]]} or a list of records'


class V1:
    label = "v1"
    log_name = "v1"

    def decode(self, body: bytes, headers: Headers, schema: InputSchema) -> Decoded:
        require_json(headers)
        payload = loads(body)
        if isinstance(payload, list):
            if payload and isinstance(payload[0], dict):
                return Decoded(schema.from_records(payload), True)
            return Decoded(schema.from_rows(payload), True)
        if not isinstance(payload, dict):
            raise MalformedRequest("the body must be a JSON object or list", hint=_SHAPE)
        given = [k for k in KEYS if k in payload]
        extra = sorted(set(payload) - {*KEYS, "probabilities"})
        if len(given) != 1 or extra:
            found = ", ".join(repr(k) for k in sorted(payload)) or "nothing"
            raise MalformedRequest(f"the body has {found}", hint=_SHAPE)
        want = payload.get("probabilities", True)
        if not isinstance(want, bool):
            raise MalformedRequest('"probabilities" must be true or false', hint=_SHAPE)
        key = given[0]
        data = payload[key]
        if key == "records":
            return Decoded(schema.from_records(data), want)
        if key == "columns":
            return Decoded(schema.from_columns(data), want)
        return Decoded(schema.from_rows(data), want)

    def encode(
        self,
        served_name: str,
        version: int,
        prediction: Prediction,
        decoded: Decoded,
        request_id: str,
        classes: list[Any] | None,
    ) -> Encoded:
        out: dict[str, Any] = {
            "model": served_name,
            "version": version,
            "predictions": jsonable(prediction.values),
        }
        if prediction.probabilities is not None:
            out["probabilities"] = jsonable(prediction.probabilities)
            out["classes"] = classes
        out["request_id"] = request_id
        return Encoded(dumps(out))
