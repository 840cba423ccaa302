"""System metrics sampled during a run: CPU, memory, and GPUs when ``nvidia-smi`` exists.

Logged as ``system/...`` series with the seconds since the run started as the step.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelcycle.tracking.run import ActiveRun


def _gpu_metrics() -> dict[str, float]:
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    metrics = {}
    for i, line in enumerate(out.strip().splitlines()):
        util, mem = (x.strip() for x in line.split(","))
        metrics[f"system/gpu{i}_utilization_percent"] = float(util)
        metrics[f"system/gpu{i}_memory_used_mb"] = float(mem)
    return metrics


def sample() -> dict[str, float]:
    import psutil

    mem = psutil.virtual_memory()
    proc = psutil.Process()
    return {
        "system/cpu_percent": psutil.cpu_percent(interval=None),
        "system/memory_used_mb": (mem.total - mem.available) / 2**20,
        "system/memory_percent": mem.percent,
        "system/process_rss_mb": proc.memory_info().rss / 2**20,
        **_gpu_metrics(),
    }


def start_sampler(run: ActiveRun, interval: float) -> threading.Thread:
    """Sample every ``interval`` seconds until the run ends."""
    import psutil

    psutil.cpu_percent(interval=None)  # the first call only sets the baseline
    started = time.monotonic()

    def loop() -> None:
        due = interval
        while run.status == "running":
            time.sleep(min(interval, 0.5))  # notice the run's end within half a second
            elapsed = time.monotonic() - started
            if run.status == "running" and elapsed >= due:
                due += interval
                run.log_metrics(sample(), step=int(elapsed))

    thread = threading.Thread(target=loop, name=f"modelcycle-system-{run.id[:8]}", daemon=True)
    thread.start()
    return thread
