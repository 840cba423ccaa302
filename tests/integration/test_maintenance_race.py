"""Two schedulers starting a maintenance run for one model at the same moment: exactly
one run starts, on SQLite and on PostgreSQL (where locking the last run locks nothing
when there is none yet)."""

from __future__ import annotations

import datetime as dt
import threading

import modelcycle as mc


def test_only_one_of_many_simultaneous_starts_runs(workspace: mc.Workspace) -> None:
    store = workspace.maintenance.store
    barrier = threading.Barrier(8)
    started: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []

    def start(n: int) -> None:
        barrier.wait(timeout=30)
        try:
            run = store.start(
                deployment="churn-live",
                model="churn",
                trigger={"by": f"scheduler-{n}"},
                policy={},
                champion="churn@1",
                min_interval_seconds=0.0,
                now=dt.datetime.now(dt.UTC),
                lease_owner=f"scheduler-{n}",
                lease_seconds=60.0,
            )
            started.append(run.id)
        except mc.ConflictError as e:
            refused.append(e.message)
        except Exception as e:  # noqa: BLE001 - reported below, the assertion names it
            errors.append(e)

    threads = [threading.Thread(target=start, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(started) == 1, f"{len(started)} runs started at once: {started}"
    assert len(refused) == 7 and all("churn" in m for m in refused)
    running = [r for r in store.runs(running=True) if r.model == "churn"]
    assert [r.id for r in running] == started
