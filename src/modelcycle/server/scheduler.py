"""The scheduler: every ``tick`` seconds, on a thread of its own, it runs the monitors
that are due, then starts and advances maintenance runs (the closed loop).

It holds its own workspace (its own store connections), so a slow monitor never holds
up the API. A monitor that fails is recorded as an ``error`` result by the monitor
service; an error reaching the scheduler itself (the store is down) is logged and the
next tick tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelcycle.core.errors import ModelcycleError

if TYPE_CHECKING:
    from modelcycle.api.workspace import Workspace

log = logging.getLogger("modelcycle.server")


class Scheduler:
    def __init__(
        self,
        root: Path,
        *,
        tick: float = 10.0,
        jobs: tuple[Callable[[Workspace], object], ...] | None = None,
    ) -> None:
        self.root = root
        self.tick = tick
        self.jobs = jobs if jobs is not None else (run_monitors, run_maintenance)
        self.ticks = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelcycle-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        from modelcycle.api.workspace import Workspace

        ws = Workspace.open(self.root)
        try:
            while not self._stop.is_set():
                self.run_once(ws)
                self._stop.wait(self.tick)
        finally:
            ws.close()

    def run_once(self, ws: Workspace) -> None:
        for job in self.jobs:
            if self._stop.is_set():
                return
            try:
                job(ws)
            except ModelcycleError as e:
                self.errors += 1
                log.error("scheduled %s failed: %s", job.__name__, e)
            except Exception:  # logged with its traceback; the next tick tries again
                self.errors += 1
                log.exception("scheduled %s failed", job.__name__)
        self.ticks += 1


def run_monitors(ws: Workspace) -> object:
    runs = ws.monitors.run_due()
    for run in runs:
        log.info(
            "monitor %s: %s, %d rows, %d alert(s) fired",
            run.monitor,
            run.status,
            run.result.rows,
            len(run.fired),
        )
    return runs


def run_maintenance(ws: Workspace) -> object:
    runs = ws.maintenance.tick()
    for run in runs:
        log.info("maintenance run %d of %s: %s (%s)", run.id, run.deployment, run.state, run.phase)
    return runs
