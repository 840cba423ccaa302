"""Prediction logs: what a server answered, kept as Parquet segments in the blob store.

`PredictionLogger.log` is called on a server's hot path: it decides sampling, appends the
record to a buffer under a lock and returns; it never waits for I/O. A background thread
writes the buffer every ``flush_rows`` records or ``flush_seconds`` seconds: one Parquet
segment per model version, all blobs first, then one transaction that records them in
``prediction_segments``. A crash leaves at most unreferenced blobs, which ``gc`` removes.
What a record holds and how it becomes rows and columns: `modelcycle.deploy.segments`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import InputDataError, StorageError, UsageError
from modelcycle.deploy.segments import write_segments
from modelcycle.store.deployments import DeploymentStore

if TYPE_CHECKING:
    from modelcycle.blobs import BlobStore

ROUTES = ("primary", "shadow")


class PredictionLogger:
    """Buffers prediction records and writes them as Parquet segments in the background.

    Thread-safe. ``sample_rate`` keeps that fraction of requests, decided by a hash of
    the request id, so a request's primary and shadow records are kept or dropped
    together, and every replica decides alike. At most ``max_buffered`` records wait;
    beyond that (the store is down or too slow) new records are dropped and counted in
    `stats` rather than slowing the server. Call `close` on shutdown: it writes what is
    buffered and raises StorageError if some records could not be written. It is a
    prediction sink for ``modelcycle serve`` as it is (``log`` and ``close``).
    """

    def __init__(
        self,
        blobs: BlobStore,
        store: DeploymentStore,
        *,
        deployment: str | None,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        sample_rate: float = 1.0,
        max_buffered: int | None = None,
    ) -> None:
        if flush_rows < 1:
            raise UsageError(f"flush_rows is {flush_rows}; it must be at least 1", hint="")
        if not flush_seconds > 0:
            raise UsageError(f"flush_seconds is {flush_seconds}; it must be positive", hint="")
        if not 0.0 <= sample_rate <= 1.0:
            raise UsageError(
                f"sample_rate is {sample_rate}; it must be between 0 and 1",
                hint="1 logs every request, 0.1 one in ten",
            )
        self.blobs = blobs
        self.store = store
        self.deployment = deployment
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.sample_rate = sample_rate
        self.max_buffered = max_buffered or 10 * flush_rows
        self._cond = threading.Condition()
        self._buffer: list[dict[str, Any]] = []
        self._first_at = 0.0  # monotonic time the oldest buffered record arrived
        self._closing = False
        self._requested = 0  # flush() tickets handed out / completed
        self._completed = 0
        self._counts = {
            "logged": 0,
            "sampled_out": 0,
            "dropped": 0,
            "rows_written": 0,
            "segments_written": 0,
            "write_failures": 0,
            "invalid": 0,
        }
        self._last_error: str | None = None
        self._last_invalid: str | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"modelcycle-predlog-{deployment or 'models'}", daemon=True
        )
        self._thread.start()

    # -- the hot path ------------------------------------------------------------------
    def log(self, record: Mapping[str, Any]) -> None:
        """Queue one record (its keys: `modelcycle.deploy.segments`)."""
        rec = dict(record)
        try:
            rec["version"] = operator.index(rec["version"])
            if not isinstance(rec["model"], str):
                raise TypeError("model")
        except (KeyError, TypeError) as e:
            raise UsageError(
                f"a prediction record needs 'model' (str) and 'version' (int); got {e}",
                hint="log {'model': 'churn', 'version': 7, ...}",
            ) from e
        route = rec.setdefault("route", "primary")
        if route not in ROUTES:
            raise UsageError(f"route {route!r} is not 'primary' or 'shadow'", hint="")
        ts = rec.get("ts")
        if ts is None:
            ts = rec["ts"] = rec.pop("time", None)
        if ts is None:
            rec["ts"] = time.time()
        elif isinstance(ts, bool) or not isinstance(ts, int | float | dt.datetime):
            raise UsageError(f"ts {ts!r} is not a datetime or seconds since the epoch", hint="")
        rid = rec.get("request_id")
        if rid is None:
            rid = rec["request_id"] = uuid.uuid4().hex
        keep = self.sample_rate >= 1.0 or _unit(str(rid)) < self.sample_rate
        with self._cond:
            if not keep:
                self._counts["sampled_out"] += 1
                return
            if self._closing or len(self._buffer) >= self.max_buffered:
                self._counts["dropped"] += 1
                return
            self._buffer.append(rec)
            self._counts["logged"] += 1
            n = len(self._buffer)
            if n == 1:
                self._first_at = time.monotonic()
                self._cond.notify()  # start the writer's clock
            elif n == self.flush_rows:
                self._cond.notify()

    # -- control -----------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Write everything logged so far now; False if that took longer than ``timeout``.
        Raises StorageError if the write failed (the records stay buffered for a retry)."""
        with self._cond:
            if not self._thread.is_alive():
                return not self._buffer
            failures = self._counts["write_failures"]
            self._requested += 1
            ticket = self._requested
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: self._completed >= ticket, timeout)
            if self._counts["write_failures"] > failures:
                raise StorageError(
                    f"prediction records could not be written: {self._last_error}",
                    hint="check that the blob store and the metadata store are reachable",
                )
            return done

    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered and stop. Raises StorageError if records were lost to
        the store, InputDataError if some could not be logged as they were."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StorageError(
                f"the prediction log writer did not finish within {timeout} s "
                f"({len(self._buffer)} records still buffered)",
                hint="check that the blob store and the metadata store are reachable",
            )
        lost = self._counts["dropped"]
        if lost:
            raise StorageError(
                f"{lost} prediction records were dropped"
                + (f"; the last write failed: {self._last_error}" if self._last_error else ""),
                hint="the store was unreachable or slower than the traffic; raise "
                "max_buffered or lower sample_rate",
            )
        if self._counts["invalid"]:
            raise InputDataError(
                f"{self._counts['invalid']} prediction records could not be logged; the "
                f"last: {self._last_invalid}",
                hint="see `modelcycle.deploy.segments` for what a record holds",
            )

    def stats(self) -> dict[str, Any]:
        """Counters for the server's metrics: records logged, sampled_out, dropped,
        invalid (left out: they could not be made rows) and buffered; rows_written (a
        record of several predicted rows writes several), segments_written,
        write_failures, last_error."""
        with self._cond:
            return {**self._counts, "buffered": len(self._buffer), "last_error": self._last_error}

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread -------------------------------------------------------------
    def _due(self) -> float | None:
        """0 when the buffer should be written now, else seconds to wait (None: forever)."""
        if self._closing or self._requested > self._completed:
            return 0.0
        if len(self._buffer) >= self.flush_rows:
            return 0.0
        if not self._buffer:
            return None
        return max(0.0, self._first_at + self.flush_seconds - time.monotonic())

    def _run(self) -> None:
        while True:
            with self._cond:
                while (wait := self._due()) != 0.0:
                    self._cond.wait(wait)
                batch, self._buffer = self._buffer, []
                closing, ticket = self._closing, self._requested
            if batch:
                self._write_or_keep(batch, retry=not closing)
            with self._cond:
                self._completed = max(self._completed, ticket)
                self._cond.notify_all()
                if closing:
                    return

    def _write_or_keep(self, batch: list[dict[str, Any]], *, retry: bool) -> None:
        try:
            written = write_segments(self.blobs, self.store, self.deployment, batch)
        # The writer must outlive a failed write (a store that is down comes back); the
        # error is kept for stats() and close(), and the batch is retried or counted lost.
        # Records with bad data do not get here: write_segments leaves them out.
        except Exception as e:  # noqa: BLE001
            with self._cond:
                self._counts["write_failures"] += 1
                self._last_error = f"{type(e).__name__}: {e}"
                room = self.max_buffered - len(self._buffer) if retry else 0
                kept = batch[-room:] if room > 0 else []
                self._counts["dropped"] += len(batch) - len(kept)
                self._buffer[:0] = kept
                if kept:
                    self._first_at = time.monotonic()  # wait flush_seconds before retrying
            return
        with self._cond:
            self._counts["rows_written"] += written.rows
            self._counts["segments_written"] += written.segments
            self._counts["invalid"] += len(written.invalid)
            if written.invalid:
                self._last_invalid = written.invalid[-1]


def _unit(request_id: str) -> float:
    """A number in [0, 1) fixed by the request id."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
