"""Errors only the model server raises, and the HTTP status of every error it answers with.

The tree below extends the one in `modelcycle.core.errors`::

    UsageError                 HTTP 400
    ├── MalformedRequest       HTTP 400  a body that is not JSON/CSV, a broken tensor
    ├── Unauthorized           HTTP 401  no or a wrong bearer token
    ├── MethodNotAllowed       HTTP 405
    ├── PayloadTooLarge        HTTP 413  a body over --max-body-mb
    └── UnsupportedMediaType   HTTP 415  a content type the endpoint does not read
    ModelcycleError
    ├── ModelFailed            HTTP 500  the model raised inside predict (has an error id)
    ├── NotReady               HTTP 503  nothing loaded yet
    └── PredictTimeout         HTTP 504  predict took longer than --timeout-s

Statuses are looked up in `STATUS` first, then in `modelcycle.core.errors.ERROR_TABLE`.
"""

from __future__ import annotations

from modelcycle.core.errors import ModelcycleError, UsageError, http_status


class MalformedRequest(UsageError):
    """The body cannot be read as what its content type says."""


class Unauthorized(UsageError):
    """The request carries no bearer token, or one the server does not know."""


class MethodNotAllowed(UsageError):
    """The path exists but not for this HTTP method."""


class PayloadTooLarge(UsageError):
    """The body is larger than the server accepts."""


class UnsupportedMediaType(UsageError):
    """The endpoint does not read this content type."""


class ModelFailed(ModelcycleError):
    """The model raised while predicting; the server log has the traceback."""


class NotReady(ModelcycleError):
    """The server has not loaded its models yet."""


class PredictTimeout(ModelcycleError):
    """The prediction did not finish within the request timeout."""


STATUS: dict[type[ModelcycleError], int] = {
    MalformedRequest: 400,
    Unauthorized: 401,
    MethodNotAllowed: 405,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ModelFailed: 500,
    NotReady: 503,
    PredictTimeout: 504,
}


def status_of(error: ModelcycleError) -> int:
    """The HTTP status the server answers ``error`` with."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return http_status(error)
