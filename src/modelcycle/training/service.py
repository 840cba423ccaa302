"""``ws.training``: run a train spec (with tuning when it has a search) on an executor."""

from __future__ import annotations

import os
from typing import Any

from modelcycle.core.config import WorkspaceConfig
from modelcycle.data.service import DatasetService
from modelcycle.executors import Executor, open_executor
from modelcycle.tracking.service import RunService
from modelcycle.training.spec import TrainSpec
from modelcycle.training.trainer import TrainResult, fit_fold, train
from modelcycle.training.tuning import Services, tune


class TrainingService:
    def __init__(
        self,
        runs: RunService,
        datasets: DatasetService,
        config: WorkspaceConfig,
        actor: str,
        *,
        remote: dict[str, Any] | None = None,
    ) -> None:
        self.runs = runs
        self.datasets = datasets
        self.config = config
        self.actor = actor
        self.remote = remote  # {"url", "token"} of the server a remote workspace uses

    def services(self) -> Services:
        c = self.config
        return Services(
            {
                "store": c.resolved_store_url(),
                "blobs": c.resolved_blobs_url(),
                "blobs_options": dict(c.blobs_options),
                "state_dir": str(c.state_dir),
                "actor": self.actor,
                "remote": self.remote,
            }
        )

    def train(
        self,
        spec: TrainSpec | dict[str, Any] | str | os.PathLike[str],
        *,
        executor: str | None = None,
        workers: int | None = None,
    ) -> TrainResult:
        """Train (and, with a ``search`` section, tune) a spec as tracked runs.

        ``executor`` overrides the spec's: ``local``, ``ray`` or ``ray://HOST:PORT``.
        The executor is reached before any run is recorded.
        """
        if isinstance(spec, dict):
            spec = TrainSpec.from_dict(spec)
        elif not isinstance(spec, TrainSpec):
            spec = TrainSpec.load(spec)
        # Resolve the data first: a bad ref fails before anything is recorded.
        self.datasets.resolve(spec.train)
        if spec.validation:
            self.datasets.resolve(spec.validation)
        chosen = executor or spec.executor
        pool = open_executor(chosen, workers or spec.workers or (2 if chosen != "local" else 1))
        if spec.search is not None:
            return tune(self.runs, self.datasets, spec, self.services(), pool)
        return train(self.runs, self.datasets, spec, map_folds=_fold_mapper(pool))


def _fold_mapper(pool: Executor) -> Any:
    if pool.name == "local" and pool.workers == 1:
        return None

    def map_folds(
        spec: TrainSpec,
        params: dict[str, Any],
        task: str,
        x: Any,
        y: Any,
        splits: list[tuple[Any, Any]],
        metrics: list[str],
    ) -> list[dict[str, float]]:
        return pool.map(
            fit_fold, [(spec, params, task, x, y, tr, te, metrics) for tr, te in splits]
        )

    return map_folds
