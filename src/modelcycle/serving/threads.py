"""A few threads that run predictions and hand results straight to asyncio futures.

`concurrent.futures.ThreadPoolExecutor` with ``loop.run_in_executor`` makes a second
future per call and chains the two; this pool puts (future, call) on a queue and sets the
asyncio future from the worker with ``call_soon_threadsafe``, which is all a request
needs. A call whose future was cancelled before a thread took it (the client gave up, the
request timed out) is skipped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class PredictThreads:
    """``count`` daemon threads named ``name-N``, fed through one queue."""

    def __init__(self, count: int, name: str) -> None:
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a thread; call on the event loop that awaits the result."""
        if self._closed:
            raise RuntimeError("these predict threads are closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return future

    def close(self) -> None:
        """Let the threads finish what is queued, then end."""
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            loop, future, fn, args = job
            if future.cancelled():
                continue
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting request
                loop.call_soon_threadsafe(_fail, future, e)
            else:
                loop.call_soon_threadsafe(_resolve, future, result)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
