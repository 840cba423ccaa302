"""Adaptive micro-batching: requests for one model version wait briefly and run together.

`BatchQueue` decides *when* a batch starts and is pure (the caller passes the time), so
its timing rules are tested with a fake clock. `Batcher` runs those decisions on the event
loop and the version's predict threads.

The rules, with ``slots`` batches allowed to run at once (one per predict thread):

- a request that finds no batch running starts one at once (an idle model never waits);
- while batches run, requests queue; a new batch starts when a slot is free and either
  the queue holds ``max_batch_size`` rows or its oldest request has waited
  ``max_latency``; when a batch finishes, the queue starts the next one at once;
- a batch takes requests oldest first up to ``max_batch_size`` rows (a larger request
  runs alone; requests are never split).

So a request waits at most ``max_latency`` before its batch starts, plus — when every
slot is busy — until the running batch finishes: never more than one batch's compute
time beyond ``max_latency`` while the queue holds no more than one batch of rows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from modelcycle.serving.threads import PredictThreads
from modelcycle.serving.values import ModelInput, Prediction

logger = logging.getLogger("modelcycle.serving")

T = TypeVar("T")


@dataclass(eq=False)
class Queued(Generic[T]):
    """One request waiting for a batch."""

    rows: int
    arrived: float
    payload: T


@dataclass
class BatchQueue(Generic[T]):
    """When batches start. Every method takes the current time and returns the batches to
    start now (each a list of requests, oldest first)."""

    max_batch_size: int
    max_latency: float
    slots: int = 1
    _queue: deque[Queued[T]] = field(default_factory=deque)
    _queued_rows: int = 0
    running: int = 0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.slots < 1 or self.max_latency < 0:
            raise ValueError("max_batch_size and slots must be >= 1, max_latency >= 0")

    @property
    def queued(self) -> int:
        return len(self._queue)

    def add(self, item: Queued[T], now: float) -> list[list[Queued[T]]]:
        self._queue.append(item)
        self._queued_rows += item.rows
        return self._start(now)

    def finished(self, now: float) -> list[list[Queued[T]]]:
        """A batch ended; its slot is free."""
        self.running -= 1
        return self._start(now)

    def due(self, now: float) -> list[list[Queued[T]]]:
        """The timer fired (see `next_deadline`)."""
        return self._start(now)

    def discard(self, item: Queued[T]) -> bool:
        """Take a request out of the queue (its client gave up); False if it already left."""
        try:
            self._queue.remove(item)
        except ValueError:
            return False
        self._queued_rows -= item.rows
        return True

    def next_deadline(self) -> float | None:
        """When the oldest request's wait runs out, if a free slot could then take it."""
        if self._queue and 0 < self.running < self.slots:
            return self._queue[0].arrived + self.max_latency
        return None

    def _ready(self, now: float) -> bool:
        return bool(self._queue) and (
            self.running == 0
            or self._queued_rows >= self.max_batch_size
            or now >= self._queue[0].arrived + self.max_latency
        )

    def _start(self, now: float) -> list[list[Queued[T]]]:
        started = []
        while self.running < self.slots and self._ready(now):
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
                item = self._queue.popleft()
                batch.append(item)
                rows += item.rows
            self._queued_rows -= rows
            self.running += 1
            started.append(batch)
        return started


@dataclass(eq=False)
class _Request:
    data: ModelInput
    want_proba: bool
    future: asyncio.Future[Prediction]


PredictFn = Callable[[ModelInput, bool], Prediction]
BatchObserver = Callable[[int, Sequence[float]], None]


class Batcher:
    """Runs `BatchQueue`'s decisions: one predict per batch in ``executor``, results split
    back to each request's future. Created on the event loop that uses it."""

    def __init__(
        self,
        predict: PredictFn,
        threads: PredictThreads,
        *,
        max_batch_size: int,
        max_latency_s: float,
        slots: int,
        observe: BatchObserver | None = None,
        concat: Callable[[Sequence[ModelInput]], ModelInput],
    ) -> None:
        self._predict = predict
        self._threads = threads
        self._queue: BatchQueue[_Request] = BatchQueue(max_batch_size, max_latency_s, slots)
        self._observe = observe
        self._concat = concat
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._items: dict[asyncio.Future[Prediction], Queued[_Request]] = {}

    def submit(self, data: ModelInput, want_proba: bool) -> asyncio.Future[Prediction]:
        future: asyncio.Future[Prediction] = self._loop.create_future()
        item = Queued(data.rows, self._loop.time(), _Request(data, want_proba, future))
        self._items[future] = item
        future.add_done_callback(self._forget)
        self._launch(self._queue.add(item, self._loop.time()))
        return future

    def _forget(self, future: asyncio.Future[Prediction]) -> None:
        item = self._items.pop(future, None)
        if item is not None and future.cancelled() and self._queue.discard(item):
            self._arm()

    def _launch(self, batches: list[list[Queued[_Request]]]) -> None:
        now = self._loop.time()
        for batch in batches:
            requests = [q.payload for q in batch]
            for q in batch:
                self._items.pop(q.payload.future, None)
            if self._observe is not None:
                self._observe(sum(q.rows for q in batch), [now - q.arrived for q in batch])
            running = self._threads.submit(self._run, requests)
            running.add_done_callback(functools.partial(self._done, requests))
        self._arm()

    def _run(self, requests: list[_Request]) -> list[Prediction | Exception]:
        data = self._concat([r.data for r in requests])
        try:
            result = self._predict(data, any(r.want_proba for r in requests))
        except Exception:
            if len(requests) == 1:
                raise
            # One request's rows broke the batch: answer each alone, so the others get
            # their predictions and no one sees an error about someone else's data.
            return [self._alone(r) for r in requests]
        return list(result.split([r.data.rows for r in requests]))

    def _alone(self, request: _Request) -> Prediction | Exception:
        try:
            return self._predict(request.data, request.want_proba)
        except Exception as e:  # noqa: BLE001 -- handed to that request's future, its error
            return e

    def _done(
        self, requests: list[_Request], running: asyncio.Future[list[Prediction | Exception]]
    ) -> None:
        for i, r in enumerate(requests):
            if r.future.done():
                continue
            if running.cancelled():
                r.future.cancel()
            elif (error := running.exception()) is not None:
                r.future.set_exception(error)
            elif isinstance(outcome := running.result()[i], Exception):
                r.future.set_exception(outcome)
            else:
                r.future.set_result(outcome)
        self._launch(self._queue.finished(self._loop.time()))

    def _arm(self) -> None:
        deadline = self._queue.next_deadline()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._launch(self._queue.due(self._loop.time()))

    def describe(self) -> dict[str, Any]:
        return {"queued": self._queue.queued, "running": self._queue.running}
