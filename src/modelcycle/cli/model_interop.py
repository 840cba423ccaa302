"""``modelcycle model export`` and ``modelcycle model import-mlflow``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def export_cmd(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@3, NAME@ALIAS or NAME@latest.")],
    fmt: Annotated[str, typer.Option("--format", help="The format to write: onnx.")] = "onnx",
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="The file to write, or a folder to write NAME-vN.onnx into."
        ),
    ] = Path("."),
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="Allow loading this code dependency; repeatable."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a version in another format (ONNX for scikit-learn and PyTorch models)."""
    from modelcycle.registry.interop import export_model

    with open_workspace() as ws:
        version = ws.models.resolve(ref)
        out = export_model(ws.models, version.ref, output, fmt, trusted=trust or ())
    if json_out:
        print_json({"ref": version.ref, "format": fmt, "path": str(out)})
        return
    console.print(f"Exported {version.ref} ({version.flavor}) as {fmt} to {out}.")


def import_mlflow_cmd(
    path: Annotated[Path, typer.Argument(help="An MLflow model folder (the one with MLmodel).")],
    name: Annotated[str, typer.Option("--name", help="Model name (created on first use).")],
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="Unpickle a pickled model (runs the code it holds): only for sources you trust.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Register an MLflow model (sklearn or xgboost flavor) as the next version of NAME."""
    from modelcycle.registry.interop import import_mlflow

    with open_workspace() as ws:
        v = import_mlflow(ws.models, path, name, trusted=trust)
    if json_out:
        print_json({"ref": v.ref, "version": v.version, "run_id": v.run_id, "flavor": v.flavor})
        return
    console.print(f"Imported {path} as {v.ref} ({v.flavor}) from run {(v.run_id or '')[:8]}.")
