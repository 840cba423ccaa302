"""``modelcycle label …``: labeling projects over dataset versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, progress, table
from modelcycle.core.errors import UsageError

app = typer.Typer(
    help="Labeling: projects, assignments, suggestions, agreement, label errors, import/export.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ProjectArg = Annotated[str, typer.Argument(help="Labeling project name.")]
FormatOpt = Annotated[str, typer.Option("--format", help="label-studio, coco, yolo, csv or jsonl.")]


def _names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _value(text: str) -> Any:
    """A label value from the command line: JSON if it parses, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command()
def create(
    project: ProjectArg,
    dataset: Annotated[str, typer.Option("--dataset", help="The version to label: NAME@REF.")],
    schema: Annotated[Path, typer.Option("--schema", help="The label schema (YAML).")],
    overlap: Annotated[int, typer.Option("--overlap", help="Annotators per task.")] = 1,
    annotators: Annotated[
        str | None, typer.Option("--annotators", help="Comma-separated annotator names.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a project with one task per row or file of a dataset version."""
    with open_workspace() as ws:
        p = ws.labels.create(
            project, dataset, schema, overlap=overlap, annotators=_names(annotators)
        )
    if json_out:
        print_json(p.to_dict())
        return
    console.print(
        f"Created project {p.name}: {p.record.num_tasks} {p.schema.kind} tasks over "
        f"{p.dataset.ref}, overlap {p.record.overlap}."
    )


@app.command("list")
def list_projects(json_out: JsonOpt = False) -> None:
    """List the labeling projects."""
    with open_workspace() as ws:
        rows = ws.labels.projects()
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("No labeling projects yet: `modelcycle label create` makes one.")
        return
    table(
        ["project", "dataset", "kind", "tasks", "annotations", "predictions"],
        [
            [
                r["name"],
                r["dataset"],
                r["schema"]["kind"],
                r["tasks"],
                r["annotations"],
                r["predictions"],
            ]
            for r in rows
        ],
    )


@app.command()
def assign(
    project: ProjectArg,
    annotators: Annotated[
        str, typer.Option("--annotators", help="Comma-separated annotator names.")
    ],
    tasks: Annotated[
        str | None,
        typer.Option("--tasks", help="Comma-separated task keys; default: round-robin over all."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Assign tasks to annotators (round-robin with the project's overlap, or a list)."""
    with open_workspace() as ws:
        result = ws.labels.assign(
            project, _names(annotators), tasks=_names(tasks) if tasks else None
        )
    if json_out:
        print_json(result)
        return
    per = ", ".join(f"{a} {n}" for a, n in result["per_annotator"].items()) or "nothing new"
    console.print(f"Assigned {result['assigned']} task(s) in {project}: {per}.")


@app.command()
def annotate(
    project: ProjectArg,
    task: Annotated[str, typer.Option("--task", help="Task key (row number or file path).")],
    annotator: Annotated[str, typer.Option("--annotator", help="Who labels.")],
    value: Annotated[
        str, typer.Option("--value", help='The label: a name, a number or JSON ("[...]").')
    ],
) -> None:
    """Record one annotation (an edit keeps the earlier one as history)."""
    with open_workspace() as ws:
        ws.labels.annotate(project, task, annotator, _value(value))
    console.print(f"Recorded {annotator}'s label for task {task} of {project}.")


@app.command()
def decide(
    project: ProjectArg,
    task: Annotated[str, typer.Option("--task", help="Task key.")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="Who decides.")],
    value: Annotated[str, typer.Option("--value", help="The label: a name, a number or JSON.")],
) -> None:
    """Resolve a task as a reviewer; the decision overrides the annotators' majority."""
    with open_workspace() as ws:
        ws.labels.decide(project, task, _value(value), reviewer=reviewer)
    console.print(f"Recorded {reviewer}'s decision for task {task} of {project}.")


@app.command()
def status(project: ProjectArg, json_out: JsonOpt = False) -> None:
    """Tasks done, in progress and in conflict, per annotator."""
    with open_workspace() as ws:
        s = ws.labels.status(project)
    if json_out:
        print_json(s)
        return
    console.print(
        f"{s['project']} over {s['dataset']}: {s['tasks']} tasks, {s['labeled']} labeled, "
        f"{s['complete']} complete, {s['conflicts']} in conflict, {s['predictions']} predictions."
    )
    if s["per_annotator"]:
        table(
            ["annotator", "assigned", "done", "in progress", "conflicts"],
            [
                [a, v["assigned"], v["done"], v["in_progress"], v["conflicts"]]
                for a, v in s["per_annotator"].items()
            ],
        )


@app.command()
def predict(
    project: ProjectArg,
    model: Annotated[
        str,
        typer.Option(
            "--model", help="A Python callable as package.module:function (MODEL@REF later)."
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Pre-annotate every task with a model's suggestions."""
    with open_workspace() as ws, progress(not json_out) as bar:
        n = ws.labels.predict(project, model, progress=bar)
    if json_out:
        print_json({"project": project, "model": model, "predictions": n})
        return
    console.print(f"Stored {n} predictions of {model} in {project}.")


@app.command()
def agreement(project: ProjectArg, json_out: JsonOpt = False) -> None:
    """Agreement between annotators: overall, per pair, per annotator, per label."""
    with open_workspace() as ws:
        report = ws.labels.agreement(project)
    if json_out:
        print_json(report)
        return
    overall = report.get("overall", {})
    console.print(
        f"{project}: {report.get('tasks_with_overlap', 0)} tasks labeled by two or more "
        f"annotators ({', '.join(report.get('annotators', []))})."
    )
    table(["measure", "value"], [[k, _num(v)] for k, v in overall.items()])
    pairs = report.get("pairs", [])
    if pairs:
        measure = next((k for k in pairs[0] if k not in ("a", "b", "n")), None)
        if measure:
            table(
                ["annotator", "annotator", "tasks", measure],
                [[p["a"], p["b"], p["n"], _num(p.get(measure))] for p in pairs],
            )


@app.command()
def issues(
    project: ProjectArg,
    exclude: Annotated[
        str | None,
        typer.Option("--exclude", help="Comma-separated columns that are not features (ids)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Labeled rows whose label is likely wrong (confident learning), most suspicious first."""
    with open_workspace() as ws:
        found = ws.labels.issues(project, exclude=_names(exclude))
    if json_out:
        print_json(found)
        return
    if not found:
        console.print(f"{project}: no likely label errors found.")
        return
    console.print(f"{project}: {len(found)} likely label error(s).")
    table(
        ["task", "given", "suggested", "score"],
        [[f["task"], f["given"], f["suggested"], _num(f["score"])] for f in found[:limit]],
    )


@app.command("import")
def import_(
    project: ProjectArg,
    file: Annotated[Path, typer.Argument(help="The file (or YOLO folder) to import.")],
    format: FormatOpt,
    schema: Annotated[
        Path | None, typer.Option("--schema", help="Label schema for a new project.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset for a new project's task data.")
    ] = None,
    add_annotators: Annotated[
        bool, typer.Option("--add-annotators", help="Register annotators the file names.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Import annotations and predictions (one transaction: all or nothing)."""
    with open_workspace() as ws:
        result = ws.labels.import_(
            project, file, format, schema=schema, dataset=dataset, add_annotators=add_annotators
        )
    if json_out:
        print_json(result)
        return
    made = f" (created over {result['dataset']})" if result.get("created") else ""
    console.print(
        f"Imported {result['annotations']} annotations and {result['predictions']} predictions "
        f"for {result['tasks']} tasks into {project}{made}."
    )


@app.command()
def export(
    project: ProjectArg,
    format: Annotated[
        str | None, typer.Option("--format", help="label-studio, coco, yolo, csv or jsonl.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="File (or folder for COCO/YOLO).")
    ] = None,
    to_dataset: Annotated[
        str | None,
        typer.Option("--to-dataset", help="Write the labeled data as a new dataset version."),
    ] = None,
    message: Annotated[
        str | None, typer.Option("-m", "--message", help="A note stored with the version.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export to a file format, or (--to-dataset) as a new dataset version with lineage."""
    if to_dataset:
        if format or output:
            raise UsageError(
                "--to-dataset writes a dataset version; --format/--output do not apply",
                hint="run two commands to do both",
            )
        with open_workspace() as ws:
            v = ws.labels.export_to_dataset(project, to_dataset, message=message)
        if json_out:
            print_json({"project": project, "version": v.ref, "content_hash": v.content_hash})
            return
        console.print(f"Exported {project} to {v.ref} ({v.content_hash[:12]}).")
        return
    if not format or output is None:
        raise UsageError(
            "give --format and --output, or --to-dataset NAME",
            hint=f"e.g. modelcycle label export {project} --format label-studio --output out.json",
        )
    with open_workspace() as ws, progress(not json_out) as bar:
        path = ws.labels.export(project, format, output, progress=bar)
    if json_out:
        print_json({"project": project, "format": format, "output": str(path)})
        return
    console.print(f"Exported {project} as {format} to {path}.")


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)
