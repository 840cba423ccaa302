"""``modelcycle serve``: the production model server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli.running import run_app

RefsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="MODEL@REF to serve (churn@champion, churn@7, churn), each under its model's "
        "name; an alias is followed when it moves."
    ),
]


def serve(
    refs: RefsArg = None,
    deployment: Annotated[
        str | None,
        typer.Option("--deployment", help="Serve this deployment's routes, shadows included."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per CPU).")
    ] = None,
    max_batch_size: Annotated[
        int, typer.Option(help="Rows per micro-batch; 0 turns batching off.")
    ] = 0,
    max_latency_ms: Annotated[
        float, typer.Option(help="Longest wait of a request for its batch.")
    ] = 5.0,
    timeout_s: Annotated[
        float, typer.Option(help="Answer 504 when predict takes longer than this.")
    ] = 30.0,
    max_body_mb: Annotated[
        float, typer.Option(help="Refuse larger request bodies with 413.")
    ] = 8.0,
    token_file: Annotated[
        Path | None,
        typer.Option(help="Require a bearer token from this file (one per line)."),
    ] = None,
    log_sample_rate: Annotated[
        float, typer.Option(help="Share of predictions logged for monitoring (0 to 1).")
    ] = 1.0,
    trust: Annotated[
        list[str] | None,
        typer.Option(help="Code a model package may import (mypkg.Model or mypkg.*); repeat."),
    ] = None,
    poll_interval_s: Annotated[
        float, typer.Option(help="How often aliases and deployment routes are re-read.")
    ] = 1.0,
    prediction_sink: Annotated[
        str | None,
        typer.Option(help="module:callable building the prediction sink (default: the log)."),
    ] = None,
    feedback_sink: Annotated[
        str | None, typer.Option(help="module:callable building the feedback sink.")
    ] = None,
) -> None:
    """Serve models over HTTP: /v1/models/NAME/predict, MLflow's /invocations and the
    Open Inference Protocol (/v2), with /metrics for Prometheus."""
    from modelcycle.api import Workspace
    from modelcycle.serving import ServeSettings, run
    from modelcycle.serving.settings import MIB

    with Workspace.open() as ws:
        # A remote workspace is reopened by each worker from MODELCYCLE_URL.
        root = None if ws.remote is not None else str(ws.root)
    settings = ServeSettings(
        refs=tuple(refs or ()),
        deployment=deployment,
        workspace=root,
        host=host,
        port=port,
        workers=workers or os.cpu_count() or 1,
        max_batch_size=max_batch_size,
        max_latency_ms=max_latency_ms,
        timeout_s=timeout_s,
        max_body_bytes=int(max_body_mb * MIB),
        token_file=None if token_file is None else str(token_file),
        log_sample_rate=log_sample_rate,
        trusted=tuple(trust or ()),
        poll_interval_s=poll_interval_s,
        prediction_sink=prediction_sink,
        feedback_sink=feedback_sink,
    )
    settings.read_tokens()  # a bad token file fails here, not in every worker
    run(settings)


def main() -> None:
    """``python -m modelcycle.serving``: `serve` alone, with the CLI's error handling."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command()(serve)
    run_app(app, "modelcycle serve", interrupted=None)
