"""modelcycle: the whole life of datasets and models in one tool.

import modelcycle as mc
ws = mc.Workspace.create("demo")
v = ws.datasets.add("iris", "iris.csv").version
"""

__version__ = "0.1.0.dev0"

from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import (
    AuthenticationError,
    BlobCorruptedError,
    ConflictError,
    GateRefused,
    InputDataError,
    IntegrityError,
    ModelcycleError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RecipeError,
    RefError,
    RulesError,
    StorageError,
    UsageError,
    ValidationFailed,
    WorkspaceNotFoundError,
)

if TYPE_CHECKING:
    from modelcycle.api import Workspace
    from modelcycle.data.recipes import Recipe


_FLUENT = (
    "active_run",
    "autolog",
    "end_run",
    "evaluate",
    "flush",
    "get_workspace",
    "load_model",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "set_workspace",
    "start_run",
)


def __getattr__(name: str) -> Any:
    # Workspace needs SQLAlchemy and Recipe needs polars: importing them on first use keeps
    # `import modelcycle` light, which the CLI's quick commands rely on.
    if name == "Workspace":
        from modelcycle.api import Workspace

        return Workspace
    if name == "Recipe":
        from modelcycle.data.recipes import Recipe

        return Recipe
    if name in _FLUENT:
        from modelcycle.api import fluent

        value = getattr(fluent, name)
        globals()[name] = value  # `mc.log_metric` runs in training loops: look it up once
        return value
    raise AttributeError(f"module 'modelcycle' has no attribute {name!r}")


__all__ = [
    "AuthenticationError",
    "BlobCorruptedError",
    "ConflictError",
    "GateRefused",
    "InputDataError",
    "IntegrityError",
    "ModelcycleError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Recipe",
    "RecipeError",
    "RefError",
    "RulesError",
    "StorageError",
    "UsageError",
    "ValidationFailed",
    "Workspace",
    "WorkspaceNotFoundError",
    "__version__",
]
__all__.extend(_FLUENT)
