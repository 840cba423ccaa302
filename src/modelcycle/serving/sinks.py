"""Where predictions and feedback go: small protocols, so storage can be plugged in.

The server never waits for a sink on a request's path. Predictions are appended to a list
(`PredictionRecorder.record`) and handed to the sink's ``log`` from a background thread a
few times a second; ``log`` should buffer and return quickly. Feedback is handed to
``add`` from a worker thread while the request waits for its 202.

A prediction record is a dict::

    request_id  str      also in the response's x-request-id header
    time        float    when the request arrived, Unix seconds
    endpoint    str      the served name ("churn")
    model       str      the model behind it ("churn")
    version     int      the model version that answered
    route       str      "primary", or "shadow" for a mirrored copy
    protocol    str      "v1", "mlflow" or "v2"
    inputs      dict     column -> values, or {"tensor": nested lists}
    outputs     dict     "prediction" -> values, and "probabilities" for classifiers
    latency_ms  float    decode + predict + encode

A sink factory is a callable ``(workspace, settings) -> sink``; name it ``module:callable``
in `ServeSettings.prediction_sink` / ``feedback_sink`` so every worker process builds its
own.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from modelcycle.core.errors import UsageError

if TYPE_CHECKING:
    from modelcycle.api import Workspace
    from modelcycle.serving.settings import ServeSettings

logger = logging.getLogger("modelcycle.serving")


@runtime_checkable
class PredictionSink(Protocol):
    """Takes prediction records; ``log`` must not block for long."""

    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class FeedbackSink(Protocol):
    """Takes ground truth for earlier predictions, joined later by ``request_id`` (items:
    ``request_id``, ``row`` (default 0), one of ``label`` / ``value``, ``ts``). What ``add``
    returns is ignored; a `ModelcycleError` it raises becomes the response's status."""

    def add(self, items: list[dict[str, Any]]) -> object: ...


PredictionSinkFactory = Callable[["Workspace | None", "ServeSettings"], PredictionSink]
FeedbackSinkFactory = Callable[["Workspace | None", "ServeSettings"], FeedbackSink]


class MemoryPredictionSink:
    """Keeps every record in a list (for tests and notebooks)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = False
        self._lock = threading.Lock()

    def log(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)

    def close(self) -> None:
        self.closed = True


class MemoryFeedbackSink:
    """Keeps every feedback item in a list (for tests and notebooks)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self.items.extend(items)


class DiscardingSink:
    """Drops everything: the default until a storage sink is configured."""

    def log(self, record: dict[str, Any]) -> None:
        pass

    def add(self, items: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass


def import_factory(path: str) -> Callable[..., Any]:
    """The callable named by ``module:attribute``."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise UsageError(f"{path!r} is not module:callable", hint="e.g. mypkg.sinks:make_sink")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"cannot import {path}: {e}", hint="check the module path") from e
    if not callable(obj):
        raise UsageError(f"{path} is not callable", hint="name a function or a class")
    return obj  # type: ignore[no-any-return]


class PredictionRecorder:
    """Collects prediction records on the event loop and hands them to a sink in batches.

    `record` only appends a tuple; building the record dicts (turning arrays into lists)
    and calling the sink happen in a worker thread.
    """

    def __init__(self, sink: PredictionSink, interval_s: float = 0.25) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self._pending: list[tuple[Any, ...]] = []
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = threading.Lock()

    def record(self, *fields: Any) -> None:
        self._pending.append(fields)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self._pending:
                await asyncio.to_thread(self.flush)

    def flush(self) -> None:
        with self._flush_lock:
            batch, self._pending = self._pending, []
            for fields in batch:
                try:
                    self.sink.log(_record(*fields))
                except Exception:
                    logger.exception("the prediction sink failed to take a record")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self._close_sink)

    def _close_sink(self) -> None:
        self.flush()
        self.sink.close()


def _record(
    request_id: str,
    time: float,
    endpoint: str,
    model: str,
    version: int,
    route: str,
    protocol: str,
    inputs: Any,
    outputs: Any,
    latency_s: float,
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "time": time,
        "endpoint": endpoint,
        "model": model,
        "version": version,
        "route": route,
        "protocol": protocol,
        "inputs": inputs.to_log(),
        "outputs": outputs.to_log(),
        "latency_ms": round(latency_s * 1000.0, 3),
    }


def build_sink(
    given: Any, path: str | None, workspace: Workspace | None, settings: ServeSettings, default: Any
) -> Any:
    """A sink given as an object, a factory, a ``module:callable`` path, else the default."""
    if given is not None:
        if callable(given) and not hasattr(given, "log") and not hasattr(given, "add"):
            return given(workspace, settings)
        return given
    if path is not None:
        return import_factory(path)(workspace, settings)
    return default(workspace, settings)


def default_prediction_sink(workspace: Workspace | None, settings: ServeSettings) -> PredictionSink:
    """The workspace's prediction log when it has one, else nothing is kept."""
    service: Any = getattr(workspace, "deployments", None)
    if service is not None and hasattr(service, "logger"):
        sink: PredictionSink = service.logger(settings.deployment)
        return sink
    return DiscardingSink()


def default_feedback_sink(workspace: Workspace | None, settings: ServeSettings) -> FeedbackSink:
    """The workspace's feedback service (``feedback`` of the workspace or of its
    deployments) when it has one, else feedback is accepted and dropped."""
    for owner in (workspace, getattr(workspace, "deployments", None)):
        service: Any = getattr(owner, "feedback", None)
        if service is not None and hasattr(service, "add"):
            sink: FeedbackSink = service
            return sink
    return DiscardingSink()
