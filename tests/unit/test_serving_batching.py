"""Micro-batching: the timing rules of `BatchQueue` with a fake clock, and `Batcher`
splitting one predict's results back to its requests."""

from __future__ import annotations

import asyncio
import heapq
import random
import threading
from typing import Any

import numpy as np
import pytest

from modelcycle.serving.batching import Batcher, BatchQueue, Queued
from modelcycle.serving.threads import PredictThreads
from modelcycle.serving.values import ModelInput, Prediction, concat


def item(rows: int, at: float, name: str = "") -> Queued[str]:
    return Queued(rows, at, name)


def names(batches: list[list[Queued[str]]]) -> list[list[str]]:
    return [[q.payload for q in batch] for batch in batches]


def test_an_idle_model_starts_at_once() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch_size=8, max_latency=0.005, slots=1)
    assert names(q.add(item(1, 0.0, "a"), now=0.0)) == [["a"]]
    assert q.running == 1 and q.queued == 0


def test_requests_queue_while_busy_and_go_together_when_it_ends() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch_size=4, max_latency=0.005, slots=1)
    q.add(item(1, 0.0, "a"), now=0.0)
    for i, name in enumerate("bcdef"):
        assert q.add(item(1, 0.001 * i, name), now=0.001 * i) == []
    assert q.next_deadline() is None  # one slot, busy: only its end can start more
    # oldest first, up to max_batch_size rows
    assert names(q.finished(now=0.010)) == [["b", "c", "d", "e"]]
    assert names(q.finished(now=0.012)) == [["f"]]
    assert q.finished(now=0.013) == [] and q.running == 0


def test_a_second_slot_starts_when_full_or_when_the_oldest_waited_max_latency() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch_size=3, max_latency=0.005, slots=2)
    q.add(item(1, 0.0, "a"), now=0.0)
    assert q.add(item(1, 0.001, "b"), now=0.001) == []
    assert q.next_deadline() == pytest.approx(0.006)
    assert q.due(now=0.0059) == []
    assert names(q.due(now=0.006)) == [["b"]]
    # both slots busy: a full queue waits for a slot
    for i, name in enumerate("cdef"):
        q.add(item(1, 0.007, name), now=0.007 + i * 1e-4)
    assert q.next_deadline() is None
    assert names(q.finished(now=0.008)) == [["c", "d", "e"]]
    # a slot is free, but f is neither due nor a full batch
    assert q.finished(now=0.009) == []
    # with g the queue holds a full batch: it starts at once
    assert names(q.add(item(2, 0.0095, "g"), now=0.0095)) == [["f", "g"]]
    assert q.add(item(1, 0.0096, "h"), now=0.0096) == []
    assert q.next_deadline() is None
    assert q.finished(now=0.010) == []
    assert q.next_deadline() == pytest.approx(0.0146)
    assert names(q.due(now=0.0146)) == [["h"]]


def test_a_large_request_runs_alone_and_is_never_split() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch_size=4, max_latency=0.0, slots=1)
    q.add(item(1, 0.0, "a"), now=0.0)
    q.add(item(10, 0.0, "big"), now=0.0)
    q.add(item(1, 0.0, "c"), now=0.0)
    assert names(q.finished(now=0.1)) == [["big"]]
    assert names(q.finished(now=0.2)) == [["c"]]


def test_a_request_given_up_leaves_the_queue() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch_size=4, max_latency=0.005, slots=1)
    q.add(item(1, 0.0, "a"), now=0.0)
    gone = item(2, 0.001, "gone")
    q.add(gone, now=0.001)
    q.add(item(1, 0.002, "c"), now=0.002)
    assert q.discard(gone) is True and q.discard(gone) is False
    assert names(q.finished(now=0.01)) == [["c"]]


@pytest.mark.parametrize("seed", range(20))
def test_no_request_waits_longer_than_max_latency_plus_one_batch(seed: int) -> None:
    """A simulation with a fake clock: random arrivals (never more rows within one batch's
    compute time than a batch holds), compute time growing with the batch. Every request
    starts within max_latency plus the longest compute time; one arriving at an idle
    model starts at once."""
    rng = random.Random(seed)
    max_rows, latency, slots = 8, 0.005, rng.choice([1, 2, 3])

    def compute(rows: int) -> float:
        return 0.001 + 0.0005 * rows

    longest = compute(max_rows)
    q: BatchQueue[int] = BatchQueue(max_rows, latency, slots)
    arrivals, t = [], 0.0
    for i in range(400):
        t += longest / max_rows * rng.choice([1, 1, 2, 5, 20])
        arrivals.append((t, i, rng.choice([1, 1, 1, 2])))
    arrived: dict[int, float] = {}
    started: dict[int, float] = {}
    idle_at_arrival: set[int] = set()
    events: list[tuple[float, int, str, Any]] = []  # (time, order, kind, data)
    order = 0
    for at, i, rows in arrivals:
        heapq.heappush(events, (at, order, "arrive", (i, rows)))
        order += 1

    sizes: list[int] = []

    def launch(batches: list[list[Queued[int]]], now: float) -> None:
        nonlocal order
        for batch in batches:
            sizes.append(len(batch))
            rows = sum(b.rows for b in batch)
            for b in batch:
                started[b.payload] = now
            heapq.heappush(events, (now + compute(min(rows, max_rows)), order, "finish", None))
            order += 1
        deadline = q.next_deadline()
        if deadline is not None:
            heapq.heappush(events, (max(deadline, now), order, "timer", None))
            order += 1

    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            i, rows = data
            arrived[i] = now
            if q.running == 0 and q.queued == 0:
                idle_at_arrival.add(i)
            launch(q.add(Queued(rows, now, i), now), now)
        elif kind == "finish":
            launch(q.finished(now), now)
        else:
            launch(q.due(now), now)

    assert set(started) == set(arrived)
    waits = {i: started[i] - arrived[i] for i in arrived}
    assert max(waits.values()) <= latency + longest + 1e-12
    assert max(sizes) > 1 and max(waits.values()) > latency / 2  # it did have to batch
    assert all(waits[i] == 0.0 for i in idle_at_arrival)
    assert q.running == 0 and q.queued == 0


def _input(values: list[float]) -> ModelInput:
    return ModelInput(len(values), np.array(values, dtype=float).reshape(-1, 1), ("x",))


def test_batcher_predicts_once_for_requests_that_queued_and_splits_the_answer() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def predict(data: ModelInput, want_proba: bool) -> Prediction:
        calls.append(data.rows)
        if len(calls) == 1:
            assert gate.wait(10)
        x = np.asarray(data.data)[:, 0]
        return Prediction(x * 10, np.stack([x, -x], axis=1) if want_proba else None)

    observed: list[tuple[int, int]] = []

    async def main() -> None:
        pool = PredictThreads(1, "test")
        try:
            batcher = Batcher(
                predict,
                pool,
                max_batch_size=16,
                max_latency_s=10.0,
                slots=1,
                observe=lambda rows, waits: observed.append((rows, len(waits))),
                concat=concat,
            )
            first = batcher.submit(_input([1.0]), False)
            queued = [
                batcher.submit(_input([2.0, 3.0]), True),
                batcher.submit(_input([4.0]), False),
                batcher.submit(_input([5.0, 6.0, 7.0]), False),
            ]
            gone = batcher.submit(_input([99.0]), False)
            gone.cancel()
            await asyncio.sleep(0)
            gate.set()
            assert (await first).values.tolist() == [10.0]
            results = [await f for f in queued]
        finally:
            pool.close()
        assert [r.values.tolist() for r in results] == [[20.0, 30.0], [40.0], [50.0, 60.0, 70.0]]
        # one of them asked for probabilities: the batch computed them for all
        assert results[0].probabilities is not None
        assert results[0].probabilities.tolist() == [[2.0, -2.0], [3.0, -3.0]]

    asyncio.run(main())
    assert calls == [1, 6]  # the cancelled request was never predicted
    assert observed == [(1, 1), (6, 3)]


def test_batcher_hands_a_failure_to_every_request_of_the_batch() -> None:
    def predict(data: ModelInput, want_proba: bool) -> Prediction:
        raise ValueError("model failed")

    async def main() -> None:
        pool = PredictThreads(1, "test")
        try:
            batcher = Batcher(
                predict, pool, max_batch_size=4, max_latency_s=0.0, slots=1, concat=concat
            )
            futures = [batcher.submit(_input([float(i)]), False) for i in range(3)]
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            pool.close()
        assert [type(r) for r in results] == [ValueError] * 3

    asyncio.run(main())


def test_one_bad_request_does_not_fail_the_others_in_its_batch() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def predict(data: ModelInput, want_proba: bool) -> Prediction:
        calls.append(data.rows)
        if len(calls) == 1:
            assert gate.wait(10)
        x = np.asarray(data.data)[:, 0]
        if (x < 0).any():
            raise ValueError(f"negative input {x.min()}")
        return Prediction(x * 10, None)

    async def main() -> list[object]:
        pool = PredictThreads(1, "test")
        try:
            batcher = Batcher(
                predict, pool, max_batch_size=16, max_latency_s=10.0, slots=1, concat=concat
            )
            first = batcher.submit(_input([1.0]), False)
            queued = [batcher.submit(_input([v]), False) for v in (2.0, -1.0, 3.0)]
            await asyncio.sleep(0)
            gate.set()
            await first
            return list(await asyncio.gather(*queued, return_exceptions=True))
        finally:
            pool.close()

    good, bad, other = asyncio.run(main())
    assert isinstance(bad, ValueError) and "negative input -1.0" in str(bad)
    assert good.values.tolist() == [20.0] and other.values.tolist() == [30.0]  # type: ignore[attr-defined]
    assert calls == [1, 3, 1, 1, 1]  # the batch of three failed, then each alone
