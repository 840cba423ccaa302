"""``modelcycle pipeline …``: run the stages of modelcycle.yaml, skipping unchanged ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import print_json, table

app = typer.Typer(
    help="Pipelines: lifecycle stages in modelcycle.yaml, re-run only when inputs change.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The pipeline file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.command()
def run(
    stage: Annotated[
        str | None, typer.Argument(help="Run up to this stage (default: all).")
    ] = None,
    file: FileOpt = Path("modelcycle.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Run stages even if unchanged.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the pipeline in dependency order; unchanged stages are skipped."""
    with open_workspace() as ws:
        result = ws.pipelines.run(file, stage=stage, force=force)
    if json_out:
        print_json(result)
        return
    table(
        ["stage", "status", "outputs"],
        [
            [
                s["stage"],
                s["status"],
                ", ".join(
                    s["outputs"].get("versions", [])
                    or [r[:8] for r in s["outputs"].get("runs", [])]
                ),
            ]
            for s in result["stages"]
        ],
        title=f"pipeline {result['pipeline']} (run {result['run']})",
    )


@app.command()
def runs(
    name: Annotated[str | None, typer.Argument(help="Pipeline name (default: the file's).")] = None,
    file: FileOpt = Path("modelcycle.yaml"),
    json_out: JsonOpt = False,
) -> None:
    """Past runs of a pipeline, newest first."""
    with open_workspace() as ws:
        if name is None:
            from modelcycle.pipelines import Pipeline

            name = Pipeline.load(file).name
        rows = ws.pipelines.runs(name)
    if json_out:
        print_json(rows)
        return
    table(
        ["run", "status", "started", "ran", "skipped"],
        [
            [
                r["id"],
                r["status"],
                r["started_at"],
                sum(
                    1
                    for s in r["stages"].values()
                    if isinstance(s, dict) and s.get("status") == "ran"
                ),
                sum(
                    1
                    for s in r["stages"].values()
                    if isinstance(s, dict) and s.get("status") == "skipped"
                ),
            ]
            for r in rows
        ],
    )
