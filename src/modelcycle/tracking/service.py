"""Runs: start them, read them back, search, compare, move and delete.

A run belongs to an experiment (created on first use). Its id is 32 hex characters;
any unique prefix of 6 or more names it on the command line.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from modelcycle.core.errors import NotFoundError, UsageError
from modelcycle.core.hashing import hash_file
from modelcycle.data.refs import check_name
from modelcycle.data.service import DatasetService
from modelcycle.data.yamlio import suggest
from modelcycle.store.metadata import VersionRecord
from modelcycle.store.runs import RunRow, RunStore
from modelcycle.tracking import environment
from modelcycle.tracking.run import ActiveRun, now_ms
from modelcycle.tracking.search import parse_filter, parse_order

if TYPE_CHECKING:
    import pandas as pd

    from modelcycle.blobs import BlobStore

DEFAULT_EXPERIMENT = "default"


class MetricPoint(NamedTuple):
    """One logged point (a tuple: histories of a million points stay cheap)."""

    step: int
    timestamp: int  # ms since the epoch
    value: float


@dataclass
class Run:
    """A run as stored: what it logged and where it came from."""

    id: str
    name: str
    experiment: str
    status: str
    start_time: int
    end_time: int | None
    user: str
    parent_id: str | None
    error: str | None
    environment: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # each series' last value
    service: RunService | None = field(default=None, repr=False, compare=False)

    @property
    def duration_s(self) -> float | None:
        return None if self.end_time is None else (self.end_time - self.start_time) / 1000

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start_time / 1000, dt.UTC)

    def metric_history(self, key: str, *, max_points: int | None = None) -> list[MetricPoint]:
        """Every logged point of ``key``, in step order (then time); ``max_points``
        downsamples to bucket means for charts."""
        assert self.service is not None
        return self.service.metric_history(self.id, key, max_points=max_points)

    def inputs(self) -> list[tuple[str, str]]:
        """(dataset version ref, role) of every version the run read."""
        assert self.service is not None
        return self.service.inputs(self.id)

    def artifacts(self) -> list[tuple[str, int]]:
        assert self.service is not None
        return [(p, s) for p, _, s in self.service.store.artifacts(self.id)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "experiment": self.experiment,
            "status": self.status,
            "start_time": self.started.isoformat(),
            "end_time": (
                None
                if self.end_time is None
                else dt.datetime.fromtimestamp(self.end_time / 1000, dt.UTC).isoformat()
            ),
            "duration_s": self.duration_s,
            "user": self.user,
            "parent_id": self.parent_id,
            "error": self.error,
            "params": self.params,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "tags": self.tags,
            "environment": self.environment,
        }


def _json_float(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf


def _utc_times(ms: Sequence[int | None]) -> Any:
    """Milliseconds since the epoch (None for none) as a datetime64[us, UTC] array."""
    import numpy as np
    import pandas as pd

    nat = np.iinfo(np.int64).min  # numpy's NaT
    values = np.array([nat if v is None else v for v in ms], dtype=np.int64)
    return pd.DatetimeIndex(values.astype("datetime64[ms]").astype("datetime64[us]")).tz_localize(
        "UTC"
    )


class _ActiveStack(threading.local):
    """Each thread's stack of active runs (``__init__`` runs once per thread)."""

    def __init__(self) -> None:
        self.runs: list[ActiveRun] = []


class RunService:
    def __init__(self, store: RunStore, datasets: DatasetService, blobs: BlobStore) -> None:
        self.store = store
        self.datasets = datasets
        self.blobs = blobs
        self._local = _ActiveStack()
        self._experiments: dict[str, int] = {}  # name -> id; experiments are never renamed
        # Registers a logged model (run id, model name, path=); set by the workspace.
        self.registrar: Any = None

    # -- the active-run stack (per thread) -------------------------------------------
    @property
    def _stack(self) -> list[ActiveRun]:
        return self._local.runs

    def active(self) -> ActiveRun | None:
        # On the path of every `mc.log_metric` call: one lookup, no property.
        runs = self._local.runs
        return runs[-1] if runs else None

    def _ended(self, run: ActiveRun) -> None:
        if run in self._stack:
            self._stack.remove(run)

    # -- starting -------------------------------------------------------------------
    def start_run(
        self,
        experiment: str | None = None,
        *,
        name: str | None = None,
        parent: ActiveRun | str | None = None,
        nested: bool = False,
        tags: dict[str, Any] | None = None,
        system_metrics: bool | float = False,
    ) -> ActiveRun:
        """Start a run and make it the active one (for ``mc.log_metric`` and friends).

        ``nested=True`` makes it a child of the active run; ``parent`` names one.
        ``system_metrics=True`` (or an interval in seconds) samples CPU and memory.
        """
        if parent is None and nested:
            parent = self.active()
            if parent is None:
                raise UsageError(
                    "nested=True needs an active run", hint="start the parent run first"
                )
        if parent is None and self.active() is not None:
            raise UsageError(
                f"run {self.active().id} is still active",  # type: ignore[union-attr]
                hint="end it first, or pass nested=True to start a child run",
            )
        parent_id = parent.id if isinstance(parent, ActiveRun) else parent
        experiment_name = experiment or os.environ.get("MODELCYCLE_EXPERIMENT", DEFAULT_EXPERIMENT)
        check_name(experiment_name, "experiment name")
        exp_id = self._experiments.get(experiment_name)
        if exp_id is None:
            exp_id = self.store.experiment_id(experiment_name, create=True)
            assert exp_id is not None
            self._experiments[experiment_name] = exp_id
        run_id = uuid.uuid4().hex
        run_name = name or _run_name(run_id)
        self.store.create_run(
            run_id,
            exp_id,
            run_name,
            now_ms(),
            parent_id,
            environment.capture(),
            {k: str(v) for k, v in (tags or {}).items()},
        )
        run = ActiveRun(self, run_id, run_name, experiment_name)
        self._stack.append(run)
        if system_metrics:
            from modelcycle.tracking.system import start_sampler

            interval = 10.0 if system_metrics is True else float(system_metrics)
            start_sampler(run, interval)
        return run

    # -- reading ---------------------------------------------------------------------
    def _row(self, run_id: str) -> RunRow:
        row = self.store.get_run(run_id)
        if row is None and len(run_id) >= 6:
            found = self.store.runs_by_prefix(run_id)
            if len(found) > 1:
                raise UsageError(
                    f"run id prefix {run_id!r} matches several runs",
                    hint="give more characters of the id",
                )
            row = found[0] if found else None
        if row is None or row.deleted_at is not None:
            state = "was deleted" if row else "does not exist"
            raise NotFoundError(
                f"run {run_id!r} {state}", hint="`modelcycle run list` shows the runs"
            )
        return row

    def _runs(self, rows: Sequence[RunRow]) -> list[Run]:
        ids = [r.id for r in rows]
        params = self.store.key_values("params", ids)
        tags = self.store.key_values("tags", ids)
        latest = self.store.latest_metrics(ids)
        return [
            Run(
                r.id,
                r.name,
                r.experiment,
                r.status,
                r.start_time,
                r.end_time,
                r.user,
                r.parent_id,
                r.error,
                r.environment or {},
                params[r.id],
                tags[r.id],
                {k: v for k, (v, _) in latest[r.id].items()},
                self,
            )
            for r in rows
        ]

    def get(self, run_id: str) -> Run:
        """A run by id (or a unique prefix of at least 6 characters)."""
        return self._runs([self._row(run_id)])[0]

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> list[MetricPoint]:
        """Every point of ``key`` in step order; with ``max_points``, at most that many
        points for a chart: the mean of each run of equal-width step buckets."""
        if max_points is not None:
            if max_points < 1:
                raise UsageError("max_points must be at least 1", hint="e.g. 1000")
            buckets = self.store.metric_buckets(run_id, key, max_points)
            if buckets:
                return [
                    MetricPoint(s, ts, math.nan if mean is None else float(mean))
                    for s, ts, mean, _, _ in buckets
                ]
        points = self.store.metric_history(run_id, key)
        if not points:
            row = self._row(run_id)
            keys = self.store.metric_keys(row.id)
            if not keys or key not in keys:
                raise NotFoundError(
                    f"run {row.id} has no metric {key!r}{suggest(key, keys)}",
                    hint=f"its metrics: {', '.join(keys) or 'none'}",
                )
        return [MetricPoint._make(p) for p in points]

    def inputs(self, run_id: str) -> list[tuple[str, str]]:
        out = []
        for vid, role in self.store.inputs(run_id):
            version = self.datasets.store.version_by_id(vid)
            if version is not None:
                out.append((version.ref, role))
        return out

    def search(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        *,
        parent: str | None = None,
    ) -> list[Run]:
        """Runs matching ``filter`` (see :mod:`modelcycle.tracking.search`), newest first
        unless ``order_by`` says otherwise."""
        rows = self.store.search(
            self._experiment_ids(experiment),
            parse_filter(filter),
            parse_order(order_by),
            max_results,
            parent_id=parent,
        )
        return self._runs(rows)

    def search_frame(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        *,
        parent: str | None = None,
    ) -> pd.DataFrame:
        """:meth:`search` as a pandas DataFrame: one row per run, ``metrics.*``,
        ``params.*`` and ``tags.*`` columns (the shape MLflow's ``search_runs`` gives),
        each group sorted by name; a run without a value has NaN there."""
        import numpy as np
        import pandas as pd

        table = self.store.search_table(
            self._experiment_ids(experiment),
            parse_filter(filter),
            parse_order(order_by),
            max_results,
            parent_id=parent,
        )
        # Built column by column: a Run object, a dict and two Timestamps per run would
        # cost many times the query.
        n = len(table.runs)
        ids, experiments, names, statuses, starts, ends = (
            map(list, zip(*table.runs, strict=True)) if n else ([] for _ in range(6))
        )
        position = {run_id: i for i, run_id in enumerate(ids)}
        metrics: dict[str, list[float]] = {}
        for run_id, key, value, is_nan in table.metrics:
            numbers = metrics.get(key)
            if numbers is None:
                numbers = metrics[key] = [math.nan] * n
            if not is_nan:  # a NaN point stays NaN, as does a run without the series
                numbers[position[run_id]] = value
        columns: dict[str, Any] = {
            "run_id": ids,
            "experiment": experiments,
            "name": names,
            "status": statuses,
            "start_time": _utc_times(starts),
            "end_time": _utc_times(ends),
        }
        columns.update((f"metrics.{k}", np.array(metrics[k], np.float64)) for k in sorted(metrics))
        for kind, rows in (("params", table.params), ("tags", table.tags)):
            texts: dict[str, list[str | None]] = {}
            for run_id, key, value in rows:
                values = texts.get(key)
                if values is None:
                    values = texts[key] = [None] * n
                values[position[run_id]] = value
            columns.update((f"{kind}.{k}", texts[k]) for k in sorted(texts))
        return pd.DataFrame(columns)

    def _experiment_ids(self, experiment: str | Sequence[str] | None) -> list[int] | None:
        if experiment is None:
            return None
        names = [experiment] if isinstance(experiment, str) else list(experiment)
        ids = []
        for n in names:
            found = self._experiments.get(n)  # experiments are never renamed nor deleted
            if found is None:
                found = self.store.experiment_id(n, create=False)
            if found is None:
                known = [e["name"] for e in self.store.experiments()]
                raise NotFoundError(
                    f"no experiment named {n!r}{suggest(n, known)}",
                    hint="`modelcycle run experiments` lists them",
                )
            self._experiments[n] = found
            ids.append(found)
        return ids

    def compare(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Params and last metric values of several runs side by side."""
        if len(run_ids) < 2:
            raise UsageError("compare needs at least two runs", hint="name two or more run ids")
        runs = [self.get(r) for r in run_ids]
        param_keys = sorted({k for r in runs for k in r.params})
        metric_keys = sorted({k for r in runs for k in r.metrics})
        return {
            "runs": [{"id": r.id, "name": r.name, "status": r.status} for r in runs],
            "params": {k: [r.params.get(k) for r in runs] for k in param_keys},
            "metrics": {
                k: [_json_float(r.metrics[k]) if k in r.metrics else None for r in runs]
                for k in metric_keys
            },
            "differing_params": [k for k in param_keys if len({r.params.get(k) for r in runs}) > 1],
        }

    def experiments(self) -> list[dict[str, Any]]:
        return self.store.experiments()

    # -- changing ------------------------------------------------------------------------
    def delete(self, run_id: str) -> list[str]:
        """Delete a run and its child runs; their artifacts become collectable by ``gc``."""
        row = self._row(run_id)
        ids = [row.id]
        i = 0
        while i < len(ids):
            ids.extend(c.id for c in self.store.children(ids[i]))
            i += 1
        self.store.delete_runs(ids)
        return ids

    def move(self, run_id: str, experiment: str) -> Run:
        row = self._row(run_id)
        check_name(experiment, "experiment name")
        exp_id = self.store.experiment_id(experiment, create=True)
        self.store.set_state(row.id, experiment_id=exp_id)
        return self.get(row.id)

    def log_inputs(self, run_id: str, inputs: Iterable[tuple[Any, str]]) -> None:
        rows = []
        for given, role in inputs:
            version = self.datasets.resolve(given) if isinstance(given, str) else given
            if not isinstance(version, VersionRecord):
                raise UsageError(
                    f"log_input takes a dataset version or a ref, got {type(version).__name__}",
                    hint='pass ws.datasets.resolve("NAME@REF") or the ref text',
                )
            rows.append((version.id, role))
        self.store.add_inputs(run_id, rows)

    def log_artifact(
        self, run_id: str, path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[str]:
        """Store a file, or a folder's files, under the run; returns the stored paths."""
        src = Path(path).expanduser()
        if not src.exists():
            raise NotFoundError(f"{src} does not exist", hint="check the artifact path")
        prefix = (artifact_path or "").strip("/")
        files: list[tuple[Path, str]] = []
        if src.is_dir():
            base = f"{prefix}/" if prefix else f"{src.name}/"
            for p in sorted(src.rglob("*")):
                if p.is_file():
                    files.append((p, base + p.relative_to(src).as_posix()))
        else:
            files.append((src, f"{prefix}/{src.name}" if prefix else src.name))
        records = []
        with self.blobs.batch() as batch:
            for p, name in files:
                size = p.stat().st_size
                put = batch.put_file(p, hash_file(p, size), size)
                records.append((name, put.oid, size))
        self.store.add_artifacts(run_id, records)
        return [name for name, _, _ in records]

    def download_artifacts(
        self, run_id: str, dest: str | os.PathLike[str], path: str | None = None
    ) -> Path:
        """Copy a run's artifacts (all, or those under ``path``) into ``dest``."""
        row = self._row(run_id)
        out = Path(dest).expanduser()
        chosen = [
            (p, o)
            for p, o, _ in self.store.artifacts(row.id)
            if path is None or p == path or p.startswith(path.rstrip("/") + "/")
        ]
        if not chosen:
            raise NotFoundError(
                f"run {row.id} has no artifact {path!r}"
                if path
                else f"run {row.id} has no artifacts",
                hint=f"`modelcycle run show {row.id[:8]}` lists them",
            )
        for p, oid in chosen:
            target = out / p
            target.parent.mkdir(parents=True, exist_ok=True)
            self.blobs.get_file(oid, target)
        return out

    def log_model(
        self,
        run: ActiveRun,
        model: Any,
        name: str,
        *,
        input_example: Any = None,
        register_as: str | None = None,
        **options: Any,
    ) -> Any:
        from modelcycle.flavors.package import save_package

        check_name(name, "model name")
        if register_as is not None:
            check_name(register_as, "model name")
        lineage = {
            "run_id": run.id,
            "experiment": run.experiment,
            "inputs": [ref for ref, _ in self.inputs(run.id)],
        }
        with tempfile.TemporaryDirectory(prefix="mc-model-") as tmp:
            folder = Path(tmp) / name
            info = save_package(
                model, folder, input_example=input_example, lineage=lineage, **options
            )
            self.log_artifact(run.id, folder, f"models/{name}")
        run.set_tag(f"model.{name}.flavor", info.flavor)
        if register_as is not None:
            if self.registrar is None:
                raise UsageError("this RunService has no registry", hint="use ws.runs")
            run.flush()
            return self.registrar(run.id, register_as, path=f"models/{name}")
        return info


_ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "deft",
    "eager",
    "fair",
    "grand",
    "keen",
    "lucid",
    "mellow",
    "noble",
    "quick",
    "rapid",
    "sharp",
    "steady",
    "vivid",
    "wise",
    "bold",
)
_NOUNS = (
    "falcon",
    "otter",
    "lynx",
    "heron",
    "maple",
    "cedar",
    "comet",
    "delta",
    "ember",
    "fjord",
    "glade",
    "harbor",
    "island",
    "meadow",
    "orbit",
    "prairie",
    "ridge",
    "tide",
)


def _run_name(run_id: str) -> str:
    n = int(run_id[:8], 16)
    return f"{_ADJECTIVES[n % len(_ADJECTIVES)]}-{_NOUNS[(n // 97) % len(_NOUNS)]}-{n % 1000}"
