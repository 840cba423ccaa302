"""``modelcycle run …``: tracked runs and experiments."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table

app = typer.Typer(
    help="Tracked runs: list, show, compare, move, delete; their metrics and artifacts.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
RunArg = Annotated[str, typer.Argument(help="Run id (or a unique prefix of 6+ characters).")]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return "" if v is None else str(v)


def _when(ms: int, *, short: bool = False) -> str:
    fmt = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime(fmt)


@app.command("list")
def list_runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only this experiment.")
    ] = None,
    filter: Annotated[
        str | None,
        typer.Option("--filter", help="e.g. \"metrics.auc > 0.9 and params.model = 'xgb'\""),
    ] = None,
    order_by: Annotated[
        list[str] | None, typer.Option("--order-by", help="e.g. 'metrics.auc DESC'.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many runs.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Runs, newest first (or by --order-by), with their params and last metric values."""
    with open_workspace() as ws:
        runs = ws.runs.search(experiment, filter, order_by, limit)
    if json_out:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        console.print("No runs match." if filter else "No runs yet: `mc.start_run()` makes one.")
        return
    metric_keys = sorted({k for r in runs for k in r.metrics})[:4]
    param_keys = sorted({k for r in runs for k in r.params})[:3]
    many = len({r.experiment for r in runs}) > 1
    table(
        [
            "run",
            "name",
            *(["experiment"] if many else []),
            "status",
            "started",
            *metric_keys,
            *param_keys,
        ],
        [
            [
                r.id[:8],
                r.name,
                *([r.experiment] if many else []),
                r.status,
                _when(r.start_time, short=True),
                *(_fmt(r.metrics.get(k)) for k in metric_keys),
                *(r.params.get(k, "") for k in param_keys),
            ]
            for r in runs
        ],
        title=None if many else f"experiment {runs[0].experiment}",
    )


@app.command()
def show(run: RunArg, json_out: JsonOpt = False) -> None:
    """One run: status, timing, environment, params, metrics, inputs and artifacts."""
    with open_workspace() as ws:
        r = ws.runs.get(run)
        inputs = r.inputs()
        artifacts = r.artifacts()
    if json_out:
        print_json(
            {
                **r.to_dict(),
                "inputs": [{"ref": ref, "role": role} for ref, role in inputs],
                "artifacts": [{"path": p, "size": s} for p, s in artifacts],
            }
        )
        return
    env = r.environment
    console.print(f"run {r.id}  {r.name}  ({r.experiment})", markup=False)
    duration = f", {r.duration_s:.1f} s" if r.duration_s is not None else ""
    console.print(f"  status   {r.status}{duration}; started {_when(r.start_time)} by {r.user}")
    if env.get("git_commit"):
        dirty = " (dirty)" if env.get("git_dirty") else ""
        console.print(f"  code     {env['git_commit'][:12]}{dirty} {env.get('source') or ''}")
    console.print(f"  python   {env.get('python', '?')} on {env.get('host', '?')}")
    if r.parent_id:
        console.print(f"  parent   {r.parent_id}")
    if r.error:
        console.print(f"  error    {r.error.strip().splitlines()[-1]}", markup=False)
    for title, values in (("params", r.params), ("metrics", r.metrics), ("tags", r.tags)):
        if values:
            table([title, "value"], [[k, _fmt(v)] for k, v in sorted(values.items())])
    if inputs:
        table(["input", "role"], [[ref, role] for ref, role in inputs])
    if artifacts:
        table(["artifact", "bytes"], [[p, s] for p, s in artifacts])


@app.command()
def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    json_out: JsonOpt = False,
) -> None:
    """Params and last metric values of runs side by side (differing params marked *)."""
    with open_workspace() as ws:
        c = ws.runs.compare(runs)
    if json_out:
        print_json(c)
        return
    heads = [f"{r['id'][:8]} {r['name']}" for r in c["runs"]]
    rows = [
        [f"{'*' if k in c['differing_params'] else ' '} params.{k}", *map(_fmt, v)]
        for k, v in c["params"].items()
    ]
    rows += [[f"  metrics.{k}", *map(_fmt, v)] for k, v in c["metrics"].items()]
    table(["", *heads], rows)


@app.command()
def metric(
    run: RunArg,
    key: Annotated[str, typer.Argument(help="Metric name.")],
    max_points: Annotated[
        int | None,
        typer.Option("--max-points", help="Downsample to at most N bucket means."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every point of one metric series, in step order."""
    with open_workspace() as ws:
        points = ws.runs.get(run).metric_history(key, max_points=max_points)
    if json_out:
        print_json(
            [{"step": p.step, "timestamp": p.timestamp, "value": _json(p.value)} for p in points]
        )
        return
    table(["step", "value", "time"], [[p.step, _fmt(p.value), _when(p.timestamp)] for p in points])


def _json(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


@app.command()
def move(
    run: RunArg,
    experiment: Annotated[str, typer.Argument(help="The experiment to move it to.")],
) -> None:
    """Move a run to another experiment (created if new)."""
    with open_workspace() as ws:
        r = ws.runs.move(run, experiment)
    console.print(f"Moved run {r.id[:8]} to experiment {r.experiment}.")


@app.command()
def delete(run: RunArg) -> None:
    """Delete a run and its child runs; `modelcycle gc` then frees their artifacts."""
    with open_workspace() as ws:
        ids = ws.runs.delete(run)
    console.print(f"Deleted {len(ids)} run(s): {', '.join(i[:8] for i in ids)}.")


@app.command()
def artifacts(
    run: RunArg,
    dest: Annotated[Path, typer.Argument(help="Folder to copy the artifacts into.")],
    path: Annotated[str | None, typer.Option("--path", help="Only this file or folder.")] = None,
) -> None:
    """Copy a run's artifacts to a folder."""
    with open_workspace() as ws:
        out = ws.runs.download_artifacts(run, dest, path)
    console.print(f"Copied artifacts to {out}.")


@app.command()
def experiments(json_out: JsonOpt = False) -> None:
    """Experiments with their numbers of runs."""
    with open_workspace() as ws:
        rows = ws.runs.experiments()
    if json_out:
        print_json(rows)
        return
    table(
        ["experiment", "runs", "created"], [[e["name"], e["runs"], e["created_at"]] for e in rows]
    )
