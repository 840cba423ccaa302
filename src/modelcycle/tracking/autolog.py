"""Autolog: record params, per-iteration metrics and the model without logging calls.

``mc.autolog()`` patches, for the frameworks that are installed:

- scikit-learn: every estimator's ``fit`` logs the estimator's params, its score on the
  training data (``training_score``) and the fitted model. Fits nested inside another
  autologged fit (a pipeline's steps, a search's candidates) are not logged separately.
- XGBoost and LightGBM (native ``train`` and their scikit-learn wrappers): the booster
  params and every evaluation metric at every boosting round (``validation_0-logloss``…),
  then the model.
- PyTorch: every ``optimizer.step()`` logs the learning rate of each parameter group, so
  a training loop's schedule is recorded; losses still need ``mc.log_metric``.

A fit outside any run starts one (and ends it afterwards); inside ``mc.start_run`` it
logs to that run. ``mc.autolog(disable=True)`` restores the originals.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelcycle.tracking.run import ActiveRun
    from modelcycle.tracking.service import RunService

_state = threading.local()
_patches: list[tuple[Any, str, Any]] = []  # (owner, attribute, original)
_removers: list[Callable[[], None]] = []  # hooks to remove on disable


def _depth() -> int:
    return getattr(_state, "depth", 0)


@contextmanager
def _outer(
    service: RunService, experiment: str | None, kind: str
) -> Iterator[tuple[ActiveRun | None, bool]]:
    """(the run to log to, whether this call is the outermost autologged one)."""
    if _depth() > 0:
        _state.depth += 1
        try:
            yield service.active(), False
        finally:
            _state.depth -= 1
        return
    _state.depth = 1
    active = service.active()
    run = active or service.start_run(experiment, tags={"autolog": kind})
    try:
        yield run, True
    except BaseException:
        if active is None:
            run.__exit__(*_exc_info())
        raise
    else:
        if active is None:
            run.end("finished")
    finally:
        _state.depth = 0


def _exc_info() -> tuple[Any, Any, Any]:
    import sys

    return sys.exc_info()


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
    if original is None or getattr(original, "_modelcycle_autolog", False):
        return
    wrapper = make(original)
    wrapper._modelcycle_autolog = True
    setattr(owner, name, wrapper)
    _patches.append((owner, name, original))


def _flat_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        else:
            out[k] = type(v).__name__ if hasattr(v, "get_params") else repr(v)[:240]
    return out


def autolog(
    service: RunService,
    *,
    experiment: str | None = None,
    log_models: bool = True,
    disable: bool = False,
) -> list[str]:
    """Patch the installed frameworks (or undo it); returns the frameworks patched."""
    if disable:
        while _patches:
            owner, name, original = _patches.pop()
            setattr(owner, name, original)
        while _removers:
            _removers.pop()()
        return []
    done = []
    for framework, install in (
        ("sklearn", _sklearn),
        ("xgboost", _xgboost),
        ("lightgbm", _lightgbm),
        ("torch", _torch),
    ):
        try:
            install(service, experiment, log_models)
        except ModuleNotFoundError:
            continue
        done.append(framework)
    return done


# -- scikit-learn --------------------------------------------------------------------------
def _fit_wrapper(
    service: RunService, experiment: str | None, log_models: bool, kind: str
) -> Callable[[Any], Any]:
    """A wrapper factory for scikit-learn-style ``fit`` methods."""

    def make(original: Any) -> Any:
        @functools.wraps(original)
        def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _outer(service, experiment, kind) as (run, outermost):
                result = original(self, *args, **kwargs)
                x = args[0] if args else kwargs.get("X")
                y = args[1] if len(args) > 1 else kwargs.get("y")
                if run is not None and outermost:
                    run.log_params(_flat_params(self.get_params(deep=False)))
                    run.set_tag("estimator", f"{type(self).__module__}.{type(self).__name__}")
                    if y is not None and hasattr(self, "score"):
                        try:
                            run.log_metric("training_score", float(self.score(x, y)))
                        except (ValueError, TypeError) as e:  # cannot score its own input
                            run.set_tag("training_score", f"not available: {e}"[:500])
                    if log_models and hasattr(self, "predict"):
                        run.log_model(self, "model", input_example=_head(x))
                return result

        return fit

    return make


def _sklearn(service: RunService, experiment: str | None, log_models: bool) -> None:
    from sklearn.utils import all_estimators

    make = _fit_wrapper(service, experiment, log_models, "sklearn")
    for _, cls in all_estimators():
        if "fit" in cls.__dict__:
            _patch(cls, "fit", make)


def _head(x: Any) -> Any:
    try:
        return x[:5] if not hasattr(x, "head") else x.head(5)
    except (TypeError, KeyError):
        return None


# -- boosting libraries ----------------------------------------------------------------------
def _patch_booster(
    service: RunService,
    experiment: str | None,
    log_models: bool,
    kind: str,
    callback: Callable[[ActiveRun], Any],
    modules: tuple[Any, ...],
    estimators: tuple[type, ...],
) -> None:
    """Wrap a library's ``train(params, data, ...)`` in ``modules`` so every round's
    evaluation results reach the run through ``callback(run)``, and the scikit-learn
    wrappers' ``fit`` so a fit through them is one run."""

    def make(original: Any) -> Any:
        @functools.wraps(original)
        def train(*args: Any, **kwargs: Any) -> Any:
            # Callers pass (params, data) by position or by the library's own names
            # (dtrain=, train_set=): only params and callbacks are looked at.
            with _outer(service, experiment, kind) as (run, outermost):
                if run is None:
                    return original(*args, **kwargs)
                if outermost:
                    params = args[0] if args else kwargs.get("params")
                    run.log_params(_flat_params(dict(params or {})))
                callbacks = list(kwargs.pop("callbacks", None) or [])
                booster = original(*args, callbacks=[*callbacks, callback(run)], **kwargs)
                if log_models and outermost:
                    run.log_model(booster, "model")
                return booster

        return train

    for module in modules:
        _patch(module, "train", make)
    fit = _fit_wrapper(service, experiment, log_models, kind)
    for cls in estimators:
        if "fit" in cls.__dict__:
            _patch(cls, "fit", fit)


def _xgboost(service: RunService, experiment: str | None, log_models: bool) -> None:
    import xgboost
    import xgboost.sklearn
    import xgboost.training

    class Logger(xgboost.callback.TrainingCallback):
        def __init__(self, run: ActiveRun) -> None:
            self.run = run

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            for data, metrics in evals_log.items():
                for name, values in metrics.items():
                    value = values[-1]
                    self.run.log_metric(
                        f"{data}-{name}",
                        float(value[0] if isinstance(value, tuple) else value),
                        step=epoch,
                    )
            return False

    _patch_booster(
        service,
        experiment,
        log_models,
        "xgboost",
        Logger,
        (xgboost.training, xgboost, xgboost.sklearn),
        (xgboost.XGBModel, xgboost.XGBClassifier, xgboost.XGBRegressor),
    )


def _lightgbm(service: RunService, experiment: str | None, log_models: bool) -> None:
    import lightgbm
    import lightgbm.engine
    import lightgbm.sklearn

    def logger(run: ActiveRun) -> Any:
        def callback(env: Any) -> None:
            for data, name, value, _ in env.evaluation_result_list:
                run.log_metric(f"{data}-{name}", float(value), step=env.iteration)

        callback.order = 30  # type: ignore[attr-defined]
        return callback

    _patch_booster(
        service,
        experiment,
        log_models,
        "lightgbm",
        logger,
        (lightgbm.engine, lightgbm, lightgbm.sklearn),
        (lightgbm.LGBMModel, lightgbm.LGBMClassifier, lightgbm.LGBMRegressor),
    )


# -- PyTorch ---------------------------------------------------------------------------------
def _torch(service: RunService, experiment: str | None, log_models: bool) -> None:
    import torch.optim.optimizer as opt

    if getattr(opt, "_modelcycle_hook", None) is not None:
        return
    steps: dict[int, int] = {}

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        run = service.active()
        if run is None:
            return
        n = steps[id(optimizer)] = steps.get(id(optimizer), -1) + 1
        for i, group in enumerate(optimizer.param_groups):
            run.log_metric(
                f"lr/group{i}" if len(optimizer.param_groups) > 1 else "lr",
                float(group["lr"]),
                step=n,
            )

    handle = opt.register_optimizer_step_post_hook(hook)
    opt._modelcycle_hook = handle  # type: ignore[attr-defined]

    def remove() -> None:
        handle.remove()
        opt._modelcycle_hook = None  # type: ignore[attr-defined]

    _removers.append(remove)
