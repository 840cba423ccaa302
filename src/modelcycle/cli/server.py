"""``modelcycle server``: the platform server (API, monitor scheduler, /metrics)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelcycle.cli.output import console
from modelcycle.core.durations import parse_duration
from modelcycle.core.errors import ModelcycleError, UsageError


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    tick: Annotated[
        str, typer.Option(help="How often the scheduler looks for due monitors: 10s, 1m …")
    ] = "10s",
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="Serve the API only; run no monitors.")
    ] = False,
) -> None:
    """Start the platform server: the JSON API under /api/v1, Prometheus gauges of the
    monitors at /metrics, and the scheduler that runs monitors when they are due."""
    import uvicorn

    from modelcycle.api import Workspace
    from modelcycle.core.config import find_workspace_root
    from modelcycle.server import Scheduler, create_app

    seconds = parse_duration(tick, "--tick")
    if seconds < 0.05:
        raise UsageError(f"--tick is {tick}; it must be at least 50ms", hint="e.g. --tick 10s")
    with Workspace.open(find_workspace_root()) as ws:  # never a remote one: it serves
        root = ws.root
        open_server = not ws.tokens.required()
    if open_server and not _loopback(host):
        raise UsageError(
            f"refusing to listen on {host} with no API token: anyone who can reach it "
            "could change the workspace",
            hint="create one first (modelcycle token create admin --role admin), or listen "
            "on 127.0.0.1",
        )
    scheduler = None if no_scheduler else Scheduler(root, tick=seconds)
    app = create_app(root, scheduler=scheduler, allow_open=_loopback(host))
    console.print(
        f"modelcycle server for {root} on http://{host}:{port} "
        f"(scheduler {'off' if scheduler is None else f'every {tick}'}; "
        f"{'open: no API token exists' if open_server else 'tokens required'})"
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)
    )
    server.run()
    if not server.started:
        raise ModelcycleError(
            f"the server could not start on {host}:{port}",
            hint="the log above says why (is the port in use?)",
        )


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
