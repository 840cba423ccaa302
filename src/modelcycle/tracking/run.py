"""An active run: logging calls that never block training.

``log_metric`` appends a tuple to an in-memory list and returns: no lock, no store, one
clock read. One background thread per process writes the lists of all runs to the
store in large batches, every ``FLUSH_SECONDS``, or sooner when a run has queued
``FLUSH_POINTS`` points. Waking rarely and writing many rows per statement matters as
much as the call itself: the writer shares the GIL with the training loop, and every
hand-over between the two threads costs the loop time. ``flush()`` returns once
everything logged before it is committed; ending the run (also on an exception, and at
interpreter exit) flushes the rest in the same transaction that sets the run's status.
No point is dropped: a failed write is retried with the next batch and reported by
``flush``/``end``.
"""

from __future__ import annotations

import atexit
import threading
import time
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import ConflictError, UsageError
from modelcycle.store.runs import Point, RunEnd, RunStore

if TYPE_CHECKING:
    from modelcycle.tracking.service import RunService

FLUSH_SECONDS = 1.0
FLUSH_POINTS = 20_000
MAX_KEY = 250
STATUSES = ("running", "finished", "failed", "killed")

_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ :")


_time = time.time


def now_ms() -> int:
    return int(_time() * 1000)


def check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY or not set(key) <= _KEY_CHARS:
        raise UsageError(
            f"{what} name {key!r} is not valid",
            hint=f"use 1-{MAX_KEY} letters, digits, '_', '-', '.', '/', ':' or spaces",
        )
    return key


class _Writer(threading.Thread):
    """One thread per process that drains the queues of all runs with points to write."""

    def __init__(self) -> None:
        super().__init__(name="modelcycle-writer", daemon=True)
        self.wake = threading.Event()
        self.runs: set[ActiveRun] = set()
        self.guard = threading.Lock()

    def add(self, run: ActiveRun) -> None:
        with self.guard:
            self.runs.add(run)

    def discard(self, run: ActiveRun) -> None:
        with self.guard:
            self.runs.discard(run)

    def run(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            with self.guard:
                runs = list(self.runs)
            for run in runs:
                if run.status == "running":
                    run._write_pending()


_writer_lock = threading.Lock()
_writer: list[_Writer] = []


def _shared_writer() -> _Writer:
    with _writer_lock:
        if not _writer:
            _writer.append(_Writer())
            _writer[0].start()
        return _writer[0]


class ActiveRun:
    """A run being recorded. Use as a context manager, or call :meth:`end`."""

    def __init__(
        self,
        service: RunService,
        run_id: str,
        name: str,
        experiment: str,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.service = service
        self.store: RunStore = service.store
        self.id = run_id
        self.name = name
        self.experiment = experiment
        # Appended to by the logging thread, taken from the front by the writer; both are
        # single list operations, atomic under the GIL, so the hot path takes no lock.
        self._points: list[Point] = []
        self._params: dict[str, str] = dict(params or {})
        self._new_params: list[tuple[str, str]] = []
        self._new_tags: list[tuple[str, str]] = []
        self._lock = threading.Lock()  # one writer at a time
        self._writer: _Writer | None = None  # set once the run has logged a metric
        self._error: BaseException | None = None
        self._keys: set[str] = set()
        self.status = "running"
        _LIVE.add(self)

    # -- logging -----------------------------------------------------------------------
    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Record one point of series ``key``. NaN and infinities are stored as such."""
        if key not in self._keys:
            self._new_key(key)
        points = self._points
        points.append(
            (
                key,
                float(value),
                0 if step is None else int(step),
                timestamp or int(_time() * 1000),
            )
        )
        if len(points) == FLUSH_POINTS:  # grows one by one here, so it passes this value
            self._wake_writer()

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        ts = timestamp or now_ms()
        for key, value in metrics.items():
            self.log_metric(key, value, step, ts)

    def log_batch(self, points: list[tuple[str, float, int, int]]) -> None:
        """Many (key, value, step, timestamp) points at once."""
        for key in {p[0] for p in points}:
            if key not in self._keys:
                self._new_key(key)
        self._points.extend([(k, float(v), int(s), int(ts)) for k, v, s, ts in points])
        if len(self._points) >= FLUSH_POINTS:
            self._wake_writer()

    def _new_key(self, key: str) -> None:
        self._keys.add(check_key(key, "metric"))
        if self._writer is None and self.status == "running":
            self._writer = _shared_writer()
            self._writer.add(self)

    def _wake_writer(self) -> None:
        writer = self._writer
        if writer is not None:
            writer.wake.set()

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters; logging a key again with a different value is an error."""
        fresh = []
        for key, value in params.items():
            check_key(key, "param")
            text = str(value)
            old = self._params.get(key)
            if old is None:
                fresh.append((key, text))
            elif old != text:
                raise ConflictError(
                    f"param {key!r} of run {self.id} is {old!r} already; cannot change it "
                    f"to {text!r}",
                    hint="params are immutable: log the new value under another key, or "
                    "start a new run",
                )
        with self._lock:
            for key, text in fresh:
                self._params[key] = text
            self._new_params.extend(fresh)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        with self._lock:
            self._new_tags.extend((check_key(k, "tag"), str(v)) for k, v in tags.items())

    def log_input(self, version: Any, role: str = "train") -> None:
        """Record that this run read a dataset version (a VersionRecord or a ref)."""
        self.service.log_inputs(self.id, [(version, role)])

    def log_artifact(self, path: str, artifact_path: str | None = None) -> list[str]:
        """Store a file or folder (contents, recursively) with the run."""
        return self.service.log_artifact(self.id, path, artifact_path)

    def log_model(
        self,
        model: Any,
        name: str = "model",
        *,
        input_example: Any = None,
        register_as: str | None = None,
        **options: Any,
    ) -> Any:
        """Save ``model`` as a model package under ``models/NAME`` of this run."""
        return self.service.log_model(
            self, model, name, input_example=input_example, register_as=register_as, **options
        )

    # -- writing -----------------------------------------------------------------------
    def _take(self) -> tuple[list[Point], list[tuple[str, str]], list[tuple[str, str]]]:
        queued = self._points
        n = len(queued)
        points = queued[:n]
        del queued[:n]  # points appended since `len` stay queued
        params, self._new_params = self._new_params, []
        tags, self._new_tags = self._new_tags, []
        return points, params, tags

    def _write_pending(self, end: RunEnd | None = None) -> None:
        with self._lock:
            points, params, tags = self._take()
            try:
                self.store.write_batch(self.id, points, params, tags, end)
                self._error = None
            except Exception as e:
                # Keep everything for the next attempt; flush()/end() report it.
                self._points[:0] = points
                self._new_params[:0] = params
                self._new_tags[:0] = tags
                self._error = e
                if end is not None:
                    raise

    def flush(self) -> None:
        """Block until everything logged so far is committed to the store."""
        self._write_pending()
        if self._error is not None:
            raise self._error

    def end(self, status: str = "finished", error: str | None = None) -> None:
        """Flush and mark the run ended (``finished``, ``failed`` or ``killed``)."""
        if self.status != "running":
            return
        if status not in STATUSES[1:]:
            raise UsageError(
                f"unknown run status {status!r}", hint="use finished, failed or killed"
            )
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.discard(self)
        self._write_pending(RunEnd(status, now_ms(), error))
        self.status = status
        _LIVE.discard(self)
        self.service._ended(self)

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("finished")
        elif isinstance(exc, KeyboardInterrupt):
            self.end("killed", "interrupted (KeyboardInterrupt)")
        else:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.end("failed", text[-8000:])

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.name!r} in {self.experiment!r} ({self.status})>"


# Runs not yet ended, kept alive until they are (a dropped reference must not lose points).
_LIVE: set[ActiveRun] = set()


@atexit.register
def _end_live_runs() -> None:
    """Runs still open when the interpreter exits: flush them and mark them finished."""
    for run in list(_LIVE):
        try:
            run.end("finished")
        except Exception as e:  # noqa: BLE001 - nothing to raise to at exit; say it
            import sys

            print(f"modelcycle: could not end run {run.id}: {e}", file=sys.stderr)
