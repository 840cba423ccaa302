"""Where heavy work runs: this process and a local process pool, or a Ray cluster.

An executor maps a module-level function over argument tuples and returns the results
in order. Work sent elsewhere gets the workspace's configuration (store and blob URLs),
never live objects, and opens its own connections.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from modelcycle.core.errors import ModelcycleError, StorageError, UsageError


class Executor:
    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or 1)

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``[fn(*args) for args in calls]``, possibly in parallel; results in order."""
        if self.workers == 1 or len(calls) <= 1:
            return [fn(*args) for args in calls]
        # spawn, not fork: the parent holds threads (the metric writer) and open databases
        with ProcessPoolExecutor(
            min(self.workers, len(calls)), mp_context=get_context("spawn")
        ) as pool:
            futures = [pool.submit(fn, *args) for args in calls]
            return [f.result() for f in futures]

    def describe(self) -> str:
        return f"local ({self.workers} process{'es' if self.workers > 1 else ''})"


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None, workers: int | None = None) -> None:
        super().__init__(workers)
        self.address = address
        try:
            import ray
        except ModuleNotFoundError as e:
            raise UsageError(
                "the ray executor needs Ray, which is not installed",
                hint="pip install 'modelcycle[ray]'",
            ) from e
        self.ray = ray
        if address and address.startswith("ray://"):
            _check_reachable(address)
        if ray.is_initialized():  # this process is connected already (ray.init by the user)
            return
        try:
            ray.init(address=address or None, ignore_reinit_error=True, log_to_driver=False)
        except (ConnectionError, RuntimeError, TimeoutError) as e:
            raise StorageError(
                f"cannot connect to the Ray cluster at {address or 'a local instance'}: {e}",
                hint="start the cluster (`ray start --head`) or fix the executor address",
            ) from e

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        remote = self.ray.remote(fn)
        refs = [remote.remote(*args) for args in calls]
        try:
            return list(self.ray.get(refs))
        except self.ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
            if isinstance(cause, ModelcycleError):
                raise cause from None
            raise ModelcycleError(
                f"a Ray task failed: {cause or e}",
                hint="see the worker's traceback above; the runs it made are marked failed",
            ) from e

    def describe(self) -> str:
        return f"ray ({self.address or 'local instance'})"


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").partition(":")
    try:
        with socket.create_connection((host, int(port or 10001)), timeout=3):
            return
    except (OSError, ValueError) as e:
        raise StorageError(
            f"the Ray cluster at {address} is unreachable: {e}",
            hint="start it (`ray start --head --ray-client-server-port PORT`) or fix the "
            "executor address; nothing was recorded",
        ) from e


def open_executor(spec: str | None, workers: int | None = None) -> Executor:
    """``local`` (default), ``ray`` (a running cluster or a local instance) or ``ray://HOST:PORT``."""
    name = spec or os.environ.get("MODELCYCLE_EXECUTOR", "local")
    if name == "local":
        return Executor(workers)
    if name == "ray":
        return RayExecutor(os.environ.get("RAY_ADDRESS"), workers)
    if name.startswith("ray://"):
        return RayExecutor(name, workers)
    raise UsageError(f"unknown executor {name!r}", hint="use local, ray or ray://HOST:PORT")
