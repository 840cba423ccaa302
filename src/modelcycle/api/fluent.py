"""Module-level tracking calls for the active run, the way MLflow users write them::

    import modelcycle as mc

    with mc.start_run(experiment="churn") as run:
        mc.log_params({"lr": 0.1})
        for step in range(100):
            mc.log_metric("loss", loss, step=step)

The workspace is the one given to :func:`set_workspace`, else the one found from
``MODELCYCLE_WORKSPACE`` or the current folder upwards (opened on first use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from modelcycle.api.workspace import Workspace
from modelcycle.core.errors import UsageError
from modelcycle.tracking.run import ActiveRun


class _Current:
    lock = threading.Lock()
    workspace: Workspace | None = None


def set_workspace(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace | None:
    """Use ``workspace`` (an open one, or a path) for the module-level calls."""
    with _Current.lock:
        _Current.workspace = (
            workspace
            if isinstance(workspace, Workspace) or workspace is None
            else Workspace.open(workspace)
        )
        return _Current.workspace


def get_workspace() -> Workspace:
    with _Current.lock:
        if _Current.workspace is None:
            _Current.workspace = Workspace.open()
        return _Current.workspace


def start_run(
    experiment: str | None = None, *, workspace: Workspace | None = None, **options: Any
) -> ActiveRun:
    """Start a run (a context manager) and make it the active one."""
    ws = workspace or get_workspace()
    return ws.runs.start_run(experiment, **options)


def active_run() -> ActiveRun | None:
    return get_workspace().runs.active() if _Current.workspace is not None else None


def _run() -> ActiveRun:
    run = active_run()
    if run is None:
        raise UsageError(
            "no active run", hint="wrap the code in `with mc.start_run(experiment=...):`"
        )
    return run


def end_run(status: str = "finished") -> None:
    _run().end(status)


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    _run().log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    _run().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    _run().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _run().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _run().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _run().set_tags(tags)


def log_input(version: Any, role: str = "train") -> None:
    _run().log_input(version, role)


def log_artifact(path: str, artifact_path: str | None = None) -> list[str]:
    return _run().log_artifact(path, artifact_path)


def log_model(model: Any, name: str = "model", **options: Any) -> Any:
    return _run().log_model(model, name, **options)


def flush() -> None:
    _run().flush()


def autolog(
    *, experiment: str | None = None, log_models: bool = True, disable: bool = False
) -> list[str]:
    """Log params, metrics and models of scikit-learn, XGBoost, LightGBM and PyTorch
    training automatically (see :mod:`modelcycle.tracking.autolog`)."""
    from modelcycle.tracking.autolog import autolog as install

    return install(
        get_workspace().runs, experiment=experiment, log_models=log_models, disable=disable
    )


def load_model(ref: str, *, trusted: tuple[str, ...] | list[str] = ()) -> Any:
    """A registered model version (``NAME@3``, ``NAME@champion``), ready to predict."""
    return get_workspace().models.load(ref, trusted=trusted)


def evaluate(model: str, data: str, **options: Any) -> Any:
    """Evaluate ``model`` (``NAME@REF``) on the dataset version ``data`` in the current
    workspace; computed once and stored (see `EvaluationService.evaluate`)."""
    return get_workspace().evaluate(model, data, **options)
