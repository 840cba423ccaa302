"""``modelcycle evaluate MODEL@REF --data DATASET@REF``: metrics, slices, importance, report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table


def evaluate(
    ref: Annotated[str, typer.Argument(help="The model version: NAME@3, NAME@champion …")],
    data: Annotated[str, typer.Option("--data", help="The dataset version to evaluate on.")],
    target: Annotated[
        str | None,
        typer.Option("--target", help="The label column (default: what the model was trained on)."),
    ] = None,
    slices: Annotated[
        list[str] | None,
        typer.Option(
            "--slice",
            help="Metrics per value of a column (`region`) or for a filter "
            "(`filter:age > 60`); repeatable.",
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
    ] = None,
    no_importance: Annotated[
        bool, typer.Option("--no-importance", help="Skip permutation importance.")
    ] = False,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="Allow loading this pickled/code dependency; repeatable."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Evaluate a model version on a dataset version; stored, so it is computed once."""
    with open_workspace() as ws:
        ev = ws.evaluations.evaluate(
            ref,
            data,
            target=target,
            slices=slices or (),
            importance=not no_importance,
            trusted=trust or (),
        )
        written = ws.evaluations.report(ev, report) if report else None
    if json_out:
        out: dict[str, Any] = ev.to_dict()
        if written:
            out["report"] = str(written)
        print_json(out)
        return
    how = "stored earlier" if ev.cached else f"computed in {ev.row.seconds:.1f} s"
    console.print(
        f"{ev.row.model_ref} on {ev.row.dataset_ref}: {ev.result.task}, "
        f"{ev.row.num_rows:,} rows ({how})",
        highlight=False,
    )
    table(["metric", "value"], [[k, _num(v)] for k, v in sorted(ev.metrics.items())])
    if ev.result.importance:
        top = ev.result.importance[:10]
        table(
            ["feature", "importance", "±"],
            [[i["feature"], _num(i["mean"]), _num(i["std"])] for i in top],
            title="permutation importance (top 10)",
        )
    if ev.result.slices:
        keys = _slice_metric_keys(ev.result.task)
        table(
            ["slice", "value", "rows", *keys],
            [
                [s["slice"], s["value"], s["n"], *(_num(s["metrics"].get(k)) for k in keys)]
                for s in ev.result.slices
            ],
            title="slices",
        )
    if written:
        console.print(f"Report: {written}", highlight=False)


def _slice_metric_keys(task: str) -> list[str]:
    return (
        ["accuracy", "f1_macro", "roc_auc"] if task == "classification" else ["mae", "rmse", "r2"]
    )


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return "" if v is None else str(v)
