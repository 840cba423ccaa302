"""Running the model server: uvicorn with uvloop and httptools, one or several workers.

One worker serves the `ModelServer` built in this process (the CLI builds it exactly as a
Python caller does, and loads the models before listening, so errors show up as errors).
Several workers are uvicorn's multi-process mode: the parent binds the socket and starts
``workers`` processes that each build the app through `worker_app` and load the models
once. The settings reach them as JSON in ``MODELCYCLE_SERVE_SETTINGS`` and the workspace
as ``MODELCYCLE_WORKSPACE``; their metrics meet in a temporary ``PROMETHEUS_MULTIPROC_DIR``.

Every accepted connection gets TCP_NODELAY. uvicorn's multi-process mode binds its socket
with ``proto`` 0, and asyncio sets the option only on sockets whose ``proto`` is TCP, so
without this keep-alive requests wait ~40 ms for a delayed ACK. The option is set in
`NoDelayHttpToolsProtocol.connection_made`, which runs for every connection in every mode.

The app tunes the process's garbage collector once its models are loaded (``quiet_gc``:
see `modelcycle.serving.app`).

SIGTERM (or Ctrl-C) stops accepting connections, lets requests in flight finish (up to
``timeout_s`` + 5 s), then flushes the prediction log and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelcycle.core.errors import ModelcycleError, UsageError
from modelcycle.serving.app import ModelServer, create_app
from modelcycle.serving.models import untrusted_error
from modelcycle.serving.settings import SETTINGS_ENV, ServeSettings
from modelcycle.serving.state import deployment_routes, static_routes

WORKER_APP = "modelcycle.serving.server:worker_app"


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with Nagle's algorithm off on every connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` (or `uvicorn.run`) serving ``settings``."""
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["modelcycle"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": NoDelayHttpToolsProtocol,
        "ws": "none",
        "lifespan": "on",
        "access_log": False,
        "server_header": False,
        "log_config": log_config,
        "timeout_graceful_shutdown": int(settings.timeout_s + 5),
    }


def run(settings: ServeSettings, **app_options: Any) -> None:
    """Serve until SIGTERM or Ctrl-C. ``app_options`` go to `ModelServer` (one worker
    only: worker processes build their sinks from the import paths in ``settings``)."""
    if settings.workers == 1:
        app = create_app(settings, **{"quiet_gc": True, **app_options})
        app.prepare()
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
        server.run()
        if not server.started:
            raise ModelcycleError(
                f"the server could not start on {settings.host}:{settings.port}",
                hint="the log above says why (is the port in use?)",
            )
        return
    if app_options:
        raise UsageError(
            f"with {settings.workers} workers, sinks and sources cannot be passed as objects",
            hint="name sink factories as module:callable in ServeSettings.prediction_sink "
            "and feedback_sink",
        )
    _check_routes(settings)
    with _worker_environment(settings):
        uvicorn.run(WORKER_APP, factory=True, workers=settings.workers, **uvicorn_options(settings))


def _check_routes(settings: ServeSettings) -> None:
    """Fail here, with the CLI's message, if the routes cannot be read or name code that
    is not trusted (each worker would fail on its own, one after another)."""
    from modelcycle.api import Workspace
    from modelcycle.flavors import trust

    with Workspace.open(settings.workspace) as ws:
        if settings.refs:
            table = static_routes(ws, settings.refs)()
        else:
            table = deployment_routes(ws, str(settings.deployment))()
        for target in table.targets():
            needs = ws.models.resolve(target.resolved).needs_trust or []
            refused = trust.untrusted(needs, settings.trusted)
            if refused:
                raise untrusted_error(target.resolved, refused)


@contextlib.contextmanager
def _worker_environment(settings: ServeSettings) -> Iterator[None]:
    metrics_dir = tempfile.mkdtemp(prefix="modelcycle-metrics-")
    saved = {
        k: os.environ.get(k)
        for k in (SETTINGS_ENV, "MODELCYCLE_WORKSPACE", "PROMETHEUS_MULTIPROC_DIR")
    }
    os.environ[SETTINGS_ENV] = settings.to_json()
    if settings.workspace is not None:
        os.environ["MODELCYCLE_WORKSPACE"] = settings.workspace
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app() -> ModelServer:
    """The app of one worker process (uvicorn's factory): settings from the environment."""
    return create_app(ServeSettings.from_env(), quiet_gc=True)
