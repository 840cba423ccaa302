"""The stat cache opens cleanly when several processes create it at once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from modelcycle.core.statcache import StatCache


def _open_and_write(path: str, n: int, barrier: mp.synchronize.Barrier) -> None:
    barrier.wait()
    cache = StatCache(Path(path))
    cache.update([(f"/data/{n}/f", (1, 2, 3), f"hash{n}")])
    cache.close()


def test_parallel_first_open_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "stat.db"
    ctx = mp.get_context("fork")
    workers = 8
    barrier = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_open_and_write, args=(str(path), n, barrier)) for n in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    cache = StatCache(path)
    entries = cache.load("/data")
    cache.close()
    assert sorted(entries) == sorted(f"/data/{n}/f" for n in range(workers))
    assert entries["/data/3/f"] == ((1, 2, 3), "hash3")
