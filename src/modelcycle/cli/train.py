"""``modelcycle train SPEC``: train (and tune) a train spec as tracked runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table


def train(
    spec: Annotated[Path, typer.Argument(help="The train spec (YAML).")],
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="local, ray or ray://HOST:PORT (default: the spec's)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Parallel trial workers.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Train a spec as a tracked run; with a `search` section, tune it with Optuna."""
    with open_workspace() as ws:
        result = ws.training.train(spec, executor=executor, workers=workers)
    if json_out:
        print_json(result.to_dict())
        return
    kind = f"tuned over {len(result.children)} trials" if result.children else "trained"
    console.print(f"Run {result.run_id[:8]} {kind} ({result.task}).")
    table(
        ["metric", "value"],
        [
            [k, f"{v:.4f}" if math.isfinite(v) else str(v)]
            for k, v in sorted(result.metrics.items())
            if not k.startswith("train_")
        ],
    )
    console.print(f"`modelcycle run show {result.run_id[:8]}` shows the run and its model.")
