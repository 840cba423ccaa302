"""Every error modelcycle raises on purpose.

The tree::

    ModelcycleError                      exit 1   HTTP 500
    ├── UsageError                       exit 2   HTTP 400  bad arguments, refs, expressions
    │   ├── RefError                     exit 2   HTTP 400  a ref that cannot be parsed
    │   ├── RecipeError                  exit 2   HTTP 400  unknown step, bad parameters
    │   ├── RulesError                   exit 2   HTTP 400  a rule file with a typo
    │   └── PayloadTooLargeError         exit 12  HTTP 413  a request or upload over a limit
    ├── NotFoundError                    exit 3   HTTP 404  dataset, version, tag, path
    │   └── WorkspaceNotFoundError       exit 3   HTTP 404
    ├── ConflictError                    exit 4   HTTP 409  exists already, in use
    ├── InputDataError                   exit 5   HTTP 422  a file that cannot be read as data
    ├── ValidationFailed                 exit 6   HTTP 422  data broke validation rules
    │   └── GateRefused                  exit 6   HTTP 422  a promotion gate's conditions failed
    ├── AuthenticationError              exit 10  HTTP 401  no token, an unknown or expired one
    ├── PermissionDeniedError            exit 11  HTTP 403  the token's role may not do this
    ├── StorageError                     exit 7   HTTP 503  disk full, unwritable folder, S3 down
    │   └── BlobCorruptedError           exit 8   HTTP 500  a stored blob no longer matches its hash
    └── IntegrityError                   exit 9   HTTP 500  fsck found problems

Each class maps to one CLI exit code and one HTTP status in `ERROR_TABLE`; handlers look
codes up there and nowhere else. Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any


class ModelcycleError(Exception):
    """Root of every error modelcycle raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = {k: _plain(v) for k, v in self.details.items()}
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class UsageError(ModelcycleError):
    """The command or call was given arguments that cannot work."""


class RefError(UsageError):
    """A dataset/model ref such as ``NAME@3`` could not be parsed."""


class RecipeError(UsageError):
    """A recipe has an unknown step, bad parameters or a bad expression."""


class RulesError(UsageError):
    """A validation rule file is malformed."""


class PayloadTooLargeError(UsageError):
    """A request body, an upload chunk or a declared upload is larger than the server
    allows (the ``[server]`` limits of ``modelcycle.toml``); ``details['limit']`` is the
    limit in bytes."""


class NotFoundError(ModelcycleError):
    """Something named does not exist."""


class WorkspaceNotFoundError(NotFoundError):
    """No workspace at or above the folder, and none named by MODELCYCLE_WORKSPACE."""


class ConflictError(ModelcycleError):
    """The change collides with what exists (a name taken, a version in use)."""


class InputDataError(ModelcycleError):
    """A file could not be read as the data it claims to be."""


class ValidationFailed(ModelcycleError):
    """Data broke one or more validation rules; ``details['failures']`` lists them."""


class GateRefused(ValidationFailed):
    """A promotion gate refused a model version; ``details['verdict']`` lists every
    condition and whether it passed."""


class AuthenticationError(ModelcycleError):
    """A request to the platform server had no valid token (missing, unknown, revoked or
    expired)."""


class PermissionDeniedError(ModelcycleError):
    """The token is valid but its role may not do this; ``details['needed']`` names the
    role that may."""


class StorageError(ModelcycleError):
    """The metadata store or the blob store could not be written or read."""


class BlobCorruptedError(StorageError):
    """A stored blob's bytes no longer hash to its name."""


class IntegrityError(ModelcycleError):
    """``fsck`` found broken references or corrupted blobs."""


# class -> (CLI exit code, HTTP status). Looked up by walking the class's MRO.
ERROR_TABLE: dict[type[ModelcycleError], tuple[int, int]] = {
    ModelcycleError: (1, 500),
    UsageError: (2, 400),
    RefError: (2, 400),
    RecipeError: (2, 400),
    RulesError: (2, 400),
    PayloadTooLargeError: (12, 413),
    NotFoundError: (3, 404),
    WorkspaceNotFoundError: (3, 404),
    ConflictError: (4, 409),
    InputDataError: (5, 422),
    ValidationFailed: (6, 422),
    GateRefused: (6, 422),
    AuthenticationError: (10, 401),
    PermissionDeniedError: (11, 403),
    StorageError: (7, 503),
    BlobCorruptedError: (8, 500),
    IntegrityError: (9, 500),
}


def exit_code(error: ModelcycleError) -> int:
    """The CLI exit code for ``error``."""
    return _lookup(error)[0]


def http_status(error: ModelcycleError) -> int:
    """The HTTP status for ``error``."""
    return _lookup(error)[1]


def _lookup(error: ModelcycleError) -> tuple[int, int]:
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return ERROR_TABLE[ModelcycleError]
