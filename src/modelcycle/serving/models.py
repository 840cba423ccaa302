"""A model version loaded for serving: its input schema, how it is called, its threads.

Predictions run in a few threads per version (`PredictThreads`), not on the event loop: a
slow model then cannot delay health checks, other models or the request timeout, and
with many connections the loop parses the next requests while numpy works. Measured on 2
cores with a ~100 µs logistic regression and a bare uvloop/httptools app: predicting
inline answered one connection faster (median 0.25-0.34 ms against 0.44-0.46 ms), but
32 connections slower (3,580-3,700 against 3,850-4,340 requests/s) than the threads.

scikit-learn models fitted on a DataFrame check the feature names of every input, and
building a one-row DataFrame and predicting on it took ten times as long as predicting on
an array (1.3 ms against 0.14 ms, logistic regression on iris). For a model whose inputs
are all numeric, the server therefore calls a shallow copy of the estimator (and of the
steps of a pipeline) that no longer records its feature names, on the 2-D array the
request decoder already built in the fitted column order. Names and order are checked by
the decoder instead. The copy is used only when, at load time, it predicts exactly what
the model predicts on a DataFrame of the input example, without any warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelcycle.core.errors import ModelcycleError, UsageError
from modelcycle.deploy.routes import Target
from modelcycle.flavors.package import LoadedModel
from modelcycle.serving.batching import Batcher, BatchObserver
from modelcycle.serving.schema import FLOATS, ColumnsSchema, InputSchema, TensorSchema, schema_for
from modelcycle.serving.threads import PredictThreads
from modelcycle.serving.values import ModelInput, Prediction, concat

if TYPE_CHECKING:
    from modelcycle.api import Workspace

logger = logging.getLogger("modelcycle.serving")
# warnings.catch_warnings changes process-wide state: one probe at a time.
_PROBE_LOCK = threading.Lock()

Call = Callable[[Any], Any]


class ServedVersion:
    """One loaded model version, ready to answer requests."""

    def __init__(
        self, target: Target, loaded: LoadedModel, *, threads: int = 2, load_seconds: float = 0.0
    ) -> None:
        self.target = target
        self.loaded = loaded
        self.load_seconds = load_seconds
        self.is_classifier = loaded.has_predict_proba
        classes = getattr(loaded.native, "classes_", None)
        self.classes: list[Any] | None = None if classes is None else np.asarray(classes).tolist()
        schema = schema_for(loaded.signature)
        example = _example(loaded, schema)
        self._values, self._proba, self.fast_path = _callers(loaded, schema, example)
        if isinstance(schema, ColumnsSchema | TensorSchema) and example is not None:
            schema = schema.with_missing(self._takes_nan(example))
        self.schema: InputSchema = schema
        self.threads = threads
        self.threads_pool = PredictThreads(threads, f"predict-{target.resolved}")
        self.batcher: Batcher | None = None
        #: set once the server has made it ready on its event loop
        self.active = False

    @property
    def name(self) -> str:
        return self.target.model

    def predict(self, data: ModelInput, want_proba: bool) -> Prediction:
        """Predictions for ``data`` (runs in a predict thread)."""
        values = np.asarray(self._values(data))
        proba = None
        if want_proba and self._proba is not None:
            proba = np.asarray(self._proba(data))
        if values.ndim == 0 or len(values) != data.rows:
            raise RuntimeError(
                f"{self.target.resolved} returned {values.shape} predictions for {data.rows} rows"
            )
        return Prediction(values, proba)

    def enable_batching(
        self, max_batch_size: int, max_latency_s: float, observe: BatchObserver | None
    ) -> None:
        """Batch this version's requests from now on (call on the serving event loop)."""
        self.batcher = Batcher(
            self.predict,
            self.threads_pool,
            max_batch_size=max_batch_size,
            max_latency_s=max_latency_s,
            slots=self.threads,
            observe=observe,
            concat=concat,
        )

    def submit(self, data: ModelInput, want_proba: bool) -> asyncio.Future[Prediction]:
        """Start predicting ``data``; the future resolves on the event loop."""
        if self.batcher is not None:
            return self.batcher.submit(data, want_proba)
        return self.threads_pool.submit(self.predict, data, want_proba)

    def close(self) -> None:
        """Stop the predict threads once what they run has finished."""
        self.threads_pool.close()

    def describe(self) -> dict[str, Any]:
        info = self.loaded.info
        return {
            **self.target.to_dict(),
            "flavor": info.flavor,
            "signature": None if info.signature is None else info.signature.to_dict(),
            "classes": self.classes,
        }

    def _takes_nan(self, example: ModelInput) -> bool:
        """Whether the model predicts on an input holding NaN (decides if nulls are 422)."""
        holed = _with_a_nan(example)
        if holed is None:
            return False
        try:
            with _PROBE_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._values(holed)
        except Exception:  # noqa: BLE001 - any failure means: no NaN for this model
            return False
        return True


def _example(loaded: LoadedModel, schema: InputSchema) -> ModelInput | None:
    """The package's input example as the decoder would build it, else zeros if possible."""
    try:
        raw = loaded.input_example()
    except (ModelcycleError, OSError, ValueError):
        raw = None
    try:
        if raw is not None and hasattr(raw, "columns"):
            columns = {str(c): raw[c].tolist() for c in raw.columns}
            return schema.from_columns(columns)
        if raw is not None:
            return schema.from_rows(np.asarray(raw).tolist())
    except ModelcycleError:
        pass
    if isinstance(schema, ColumnsSchema) and schema.numeric:
        zeros = np.zeros((2, len(schema.names)), dtype=schema.matrix_dtype)
        return ModelInput(2, zeros, schema.names)
    if isinstance(schema, TensorSchema) and schema.spec.shape and -1 not in schema.spec.shape[1:]:
        return ModelInput(2, np.zeros((2, *schema.spec.shape[1:]), dtype=schema.spec.dtype))
    return None


def _with_a_nan(example: ModelInput) -> ModelInput | None:
    if isinstance(example.data, dict):
        return None  # mixed tables: nulls in float columns stay refused
    if example.data.dtype.name not in FLOATS or not example.data.size:
        return None
    holed = example.data.copy()
    holed.flat[0] = np.nan
    return ModelInput(example.rows, holed, example.names)


def _callers(
    loaded: LoadedModel, schema: InputSchema, example: ModelInput | None
) -> tuple[Call, Call | None, bool]:
    """How to call predict and predict_proba on decoded input, and whether the fast path
    (an estimator without feature names, on a plain array) is used."""
    proba = loaded.has_predict_proba
    if isinstance(schema, ColumnsSchema) and schema.numeric:
        view = _unnamed_view(loaded, schema, example)
        if view is not None:
            return (
                lambda d: view.predict(d.data),
                (lambda d: view.predict_proba(d.data)) if proba else None,
                True,
            )
    if schema.kind in ("columns", "free"):

        def as_model_input(d: ModelInput) -> Any:
            if isinstance(d.data, dict) or d.names is not None:
                return schema.frame(d)
            return d.data

        return (
            lambda d: loaded.predict(as_model_input(d)),
            (lambda d: loaded.predict_proba(as_model_input(d))) if proba else None,
            False,
        )
    return (
        lambda d: loaded.predict(d.data),
        (lambda d: loaded.predict_proba(d.data)) if proba else None,
        False,
    )


def _unnamed_view(loaded: LoadedModel, schema: ColumnsSchema, example: ModelInput | None) -> Any:
    """A copy of a scikit-learn model that takes arrays without feature-name checks, if it
    predicts exactly like the model does on a DataFrame; else None."""
    if loaded.info.flavor != "sklearn":
        return None
    native = loaded.native
    names = getattr(native, "feature_names_in_", None)
    if names is None:
        return _Plain(native)  # fitted on arrays: nothing to strip
    if example is None or [str(n) for n in names] != list(schema.names):
        return None
    view = _strip_names(native)
    frame = schema.frame(example)
    try:
        with _PROBE_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            same = _same(loaded.predict(frame), view.predict(example.data))
            if same and loaded.has_predict_proba:
                same = _same(loaded.predict_proba(frame), view.predict_proba(example.data))
    except Exception:  # noqa: BLE001 - any failure means: keep the DataFrame path
        logger.info("%s: predicting on arrays failed; using DataFrames", loaded.info.path.name)
        return None
    if not same or caught:
        return None
    return view


class _Plain:
    """A scikit-learn model fitted on arrays, called directly."""

    def __init__(self, estimator: Any) -> None:
        self.predict = estimator.predict
        if hasattr(estimator, "predict_proba"):
            self.predict_proba = estimator.predict_proba


def _same(a: Any, b: Any) -> bool:
    x, y = np.asarray(a), np.asarray(b)
    return x.shape == y.shape and x.dtype == y.dtype and bool(np.array_equal(x, y))


def _strip_names(estimator: Any) -> Any:
    from sklearn.pipeline import Pipeline

    view = copy.copy(estimator)
    if isinstance(view, Pipeline):
        view.steps = [
            (name, step if step is None or isinstance(step, str) else _strip_names(step))
            for name, step in view.steps
        ]
    elif "feature_names_in_" in vars(view):
        del view.feature_names_in_
    return view


def load_version(
    workspace: Workspace, target: Target, *, trusted: tuple[str, ...], threads: int
) -> ServedVersion:
    """Load ``target`` from the workspace's registry (blocking: call it in a thread)."""
    started = time.perf_counter()
    try:
        with _loading_lock(workspace.models.cache_dir):
            loaded = workspace.models.load(target.resolved, trusted=trusted)
    except UsageError as e:
        if e.details.get("untrusted"):
            raise untrusted_error(target.resolved, e.details["untrusted"]) from e
        raise
    version = ServedVersion(target, loaded, threads=threads)
    version.load_seconds = time.perf_counter() - started
    return version


@contextlib.contextmanager
def _loading_lock(cache_dir: Path) -> Iterator[None]:
    """One process at a time unpacks models into the workspace's cache: the workers of one
    server load the same new version at the same moment when an alias moves."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".serving-load.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def untrusted_error(ref: str, names: list[str]) -> UsageError:
    """Loading ``ref`` would import code the server was not told to trust."""
    return UsageError(
        f"{ref} names code that is not trusted: {', '.join(names)}; loading it would run it",
        hint="if you trust where it comes from, serve with "
        + " ".join(f"--trust {n}" for n in names)
        + " (ServeSettings.trusted)",
        untrusted=names,
    )
