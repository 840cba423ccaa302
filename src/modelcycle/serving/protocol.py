"""What the three wire protocols share: decoded requests, JSON, content types.

A protocol turns a request body into a `Decoded` request for one model version's input
schema, and a `Prediction` back into a response body. `modelcycle.serving.app` does the
rest (routing, timeouts, metrics, logging) the same way for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from modelcycle.serving.errors import MalformedRequest, UnsupportedMediaType
from modelcycle.serving.http import JSON, ResponseHeaders
from modelcycle.serving.schema import InputSchema
from modelcycle.serving.values import ModelInput, Prediction

CSV = b"text/csv"
OCTETS = b"application/octet-stream"
Headers = Mapping[bytes, bytes]
_DUMP = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class Decoded:
    """A request ready for the model, and what its answer should contain."""

    input: ModelInput
    want_proba: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Encoded:
    body: bytes
    content_type: bytes = JSON
    headers: ResponseHeaders = field(default_factory=list)


class WireProtocol(Protocol):
    #: the ``endpoint`` label of the request metrics, and the log record's ``protocol``
    label: str
    log_name: str

    def decode(self, body: bytes, headers: Headers, schema: InputSchema) -> Decoded: ...

    def encode(
        self,
        served_name: str,
        version: int,
        prediction: Prediction,
        decoded: Decoded,
        request_id: str,
        classes: list[Any] | None,
    ) -> Encoded: ...


def media_type(headers: Headers) -> bytes:
    """The content type without parameters, lower case; b"" when absent."""
    raw = headers.get(b"content-type", b"")
    return raw.partition(b";")[0].strip().lower()


def is_json(media: bytes) -> bool:
    return media in (b"", JSON) or (media.startswith(b"application/") and media.endswith(b"+json"))


def require_json(headers: Headers) -> None:
    media = media_type(headers)
    if not is_json(media):
        raise UnsupportedMediaType(
            f"this endpoint reads JSON, not {media.decode('latin-1')!r}",
            hint="send the body with Content-Type: application/json",
        )


def loads(body: bytes) -> Any:
    if not body:
        raise MalformedRequest("the request has no body", hint="send a JSON body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise MalformedRequest(f"the body is not valid JSON: {e}", hint="check the JSON") from e


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_DUMP)


def jsonable(array: np.ndarray[Any, Any]) -> Any:
    """An array orjson writes directly (plain numbers, contiguous), else a list."""
    if array.dtype.kind in "biuf" and array.flags.c_contiguous:
        return array
    return array.tolist()
