"""Hyperparameter search with Optuna: each trial a cross-validated child run.

The study lives beside the metadata store (a file next to the SQLite database, or the
``modelcycle_optuna`` schema of the PostgreSQL database), so an interrupted search
resumes where it stopped: running the same spec again runs only the trials still
missing. Workers (processes or Ray tasks) share the study through that storage.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcycle.core.errors import UsageError
from modelcycle.training.spec import Param, TrainSpec
from modelcycle.training.trainer import (
    LOWER_IS_BETTER,
    TrainResult,
    default_metrics,
    infer_task,
    load_data,
    train,
)


@dataclass(frozen=True)
class Services:
    """What a worker needs, rebuilt from the workspace configuration."""

    config: dict[str, Any]

    def open(self) -> Any:
        from modelcycle.blobs import open_blob_store
        from modelcycle.data.service import DatasetService
        from modelcycle.store.metadata import MetadataStore
        from modelcycle.store.runs import RunStore
        from modelcycle.tracking.service import RunService

        c = self.config
        if c.get("remote"):
            from modelcycle.remote.parts import open_parts

            parts = open_parts(
                c["remote"]["url"], c["remote"]["token"], Path(c["state_dir"]).parent
            )
            metadata: Any = parts.metadata  # stands in for the local stores, method for method
            datasets = DatasetService(metadata, parts.blobs, Path(c["state_dir"]))
            runs: Any = parts.store("runs")
            return metadata, datasets, RunService(runs, datasets, parts.blobs)
        store = MetadataStore(c["store"], actor=c["actor"])
        blobs = open_blob_store(c["blobs"], c["blobs_options"])
        datasets = DatasetService(store, blobs, Path(c["state_dir"]))
        return store, datasets, RunService(RunStore(store), datasets, blobs)


def optuna_storage(store: Any, state_dir: Path | None = None) -> str:
    """Where studies live for the metadata ``store`` (Optuna keeps its own Alembic
    version table, so it cannot share the store's tables or schema). A remote
    workspace keeps them in a file of its local ``state_dir``: workers on this machine
    share it, and the trials themselves are runs on the server."""
    url = store.url
    if url.startswith(("http://", "https://")) and state_dir is not None:
        return f"sqlite:///{state_dir / 'optuna.db'}"
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        return f"sqlite:///{db.with_name('optuna.db')}"
    if url.startswith("postgresql"):
        return str(store.side_schema_url("modelcycle_optuna"))
    raise UsageError(f"no Optuna storage for {url!r}", hint="use SQLite or PostgreSQL")


@contextmanager
def open_storage(url: str) -> Iterator[Any]:
    """An Optuna storage whose connections are closed when the block ends."""
    import optuna

    storage = optuna.storages.RDBStorage(url)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def suggest(trial: Any, space: tuple[Param, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in space:
        if p.kind == "choice":
            out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            assert p.low is not None and p.high is not None
            out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return out


def tune_worker(
    services: Services,
    spec_dict: dict[str, Any],
    source: str | None,
    parent_id: str,
    study: str,
    storage: str,
    n_trials: int,
) -> int:
    """Run ``n_trials`` trials of ``study`` (in this process, another one, or on Ray)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = TrainSpec.from_dict(spec_dict, source or "train spec")
    assert spec.search is not None
    store, datasets, runs = services.open()
    try:
        data = (
            load_data(datasets, spec.train, spec),
            load_data(datasets, spec.validation, spec) if spec.validation else None,
        )
        task = spec.task or infer_task(data[0].y)
        metric = spec.search.metric or default_metrics(task)[0]

        def objective(trial: Any) -> float:
            params = suggest(trial, spec.search.space)  # type: ignore[union-attr]

            def report(i: int, scores: dict[str, float]) -> None:
                value = scores.get(metric, math.nan)
                if not math.isnan(value):
                    trial.report(value, i)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after fold {i + 1}")

            result = train(
                runs,
                datasets,
                spec,
                params=params,
                parent=parent_id,
                on_fold=report,
                log_model=False,
                data=data,
            )
            trial.set_user_attr("run_id", result.run_id)
            key = f"cv_{metric}_mean" if spec.cv else f"val_{metric}"
            if key not in result.metrics:
                key = f"train_{metric}"
            return result.metrics[key]

        with open_storage(storage) as st:
            optuna.load_study(study_name=study, storage=st).optimize(
                objective, n_trials=n_trials, catch=()
            )
        return n_trials
    finally:
        store.close()


def tune(
    runs: Any, datasets: Any, spec: TrainSpec, services: Services, executor: Any
) -> TrainResult:
    """Search ``spec.search`` and refit the best params as the parent run's model."""
    import optuna

    assert spec.search is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = spec.search
    storage = optuna_storage(runs.store.store, Path(services.config["state_dir"]))
    study_name = search.study or f"{spec.experiment}/{spec.name or spec.estimator}"
    pruner: Any = (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        if search.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    with open_storage(storage) as st:
        return _search(runs, datasets, spec, services, executor, st, study_name, pruner)


def _search(
    runs: Any,
    datasets: Any,
    spec: TrainSpec,
    services: Services,
    executor: Any,
    st: Any,
    study_name: str,
    pruner: Any,
) -> TrainResult:
    import optuna

    assert spec.search is not None
    search = spec.search
    storage = st.url
    train_data = load_data(datasets, spec.train, spec)
    task = spec.task or infer_task(train_data.y)
    metric = search.metric or default_metrics(task)[0]
    direction = search.direction or ("minimize" if metric in LOWER_IS_BETTER else "maximize")
    study = optuna.create_study(
        study_name=study_name,
        storage=st,
        direction="minimize" if direction == "minimize" else "maximize",
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        pruner=pruner,
        load_if_exists=True,
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = sum(1 for t in study.get_trials(deepcopy=False) if t.state in finished)
    remaining = max(0, search.trials - done)
    with runs.start_run(
        spec.experiment,
        name=spec.name,
        tags={
            "estimator": spec.estimator,
            "task": task,
            "tuning": "optuna",
            "study": study_name,
            "executor": executor.describe(),
        },
    ) as parent:
        parent.log_params(
            {
                "search.trials": search.trials,
                "search.metric": metric,
                "search.direction": direction,
                "cv": spec.cv,
                "seed": spec.seed,
            }
        )
        parent.log_input(train_data.version, "train")
        workers = max(1, min(executor.workers, remaining))
        shares = [
            remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)
        ]
        spec_dict = spec.to_dict()
        parent.flush()
        executor.map(
            tune_worker,
            [
                (services, spec_dict, spec.source, parent.id, study_name, storage, n)
                for n in shares
                if n
            ],
        )
        study = optuna.load_study(study_name=study_name, storage=st)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise UsageError(
                f"no trial of study {study_name!r} completed", hint="widen the search space"
            )
        best = study.best_trial
        parent.log_params({f"best.{k}": v for k, v in best.params.items()})
        parent.log_metrics(
            {
                f"best_{metric}": float(best.value),  # type: ignore[arg-type]
                "trials_complete": len(complete),
                "trials_pruned": sum(
                    1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED
                ),
            }
        )
        parent.set_tags({"best_trial": best.number, "best_run": best.user_attrs.get("run_id", "")})
        from modelcycle.training.trainer import fit, make_estimator, score

        params = {**spec.params, **best.params}
        model = make_estimator(spec, params, task, train_data.x)
        fit(model, train_data.x, train_data.y)
        metrics: dict[str, float] = {f"best_{metric}": float(best.value)}  # type: ignore[arg-type]
        if spec.validation:
            val = load_data(datasets, spec.validation, spec)
            parent.log_input(val.version, "validation")
            for m in spec.metrics or default_metrics(task):
                metrics[f"val_{m}"] = score(model, m, val.x, val.y, task)
            parent.log_metrics(metrics)
        parent.log_model(model, "model", input_example=train_data.x.head(5))
    children = [r.id for r in runs.search(spec.experiment, parent=parent.id, max_results=10_000)]
    return TrainResult(parent.id, task, metrics, params, model, children)
