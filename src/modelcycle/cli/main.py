"""The ``modelcycle`` command: a thin layer that parses, calls the API, and renders."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelcycle import __version__
from modelcycle.cli import dataset as dataset_cli
from modelcycle.cli import deploy as deploy_cli
from modelcycle.cli import drift as drift_cli
from modelcycle.cli import evaluate as evaluate_cli
from modelcycle.cli import label as label_cli
from modelcycle.cli import maintenance as maintenance_cli
from modelcycle.cli import model as model_cli
from modelcycle.cli import monitor as monitor_cli
from modelcycle.cli import pipeline as pipeline_cli
from modelcycle.cli import predict as predict_cli
from modelcycle.cli import run as run_cli
from modelcycle.cli import serve as serve_cli
from modelcycle.cli import server as server_cli
from modelcycle.cli import token as token_cli
from modelcycle.cli import train as train_cli
from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import (
    console,
    human_bytes,
    print_json,
    progress,
    table,
    when,
)
from modelcycle.cli.running import run_app
from modelcycle.core.errors import NotFoundError, UsageError

app = typer.Typer(
    name="modelcycle",
    help="The whole life of datasets and models: version, clean, label, train, evaluate, "
    "gate, register, serve, monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(dataset_cli.app, name="dataset")
app.add_typer(label_cli.app, name="label")
app.add_typer(run_cli.app, name="run")
app.command("train")(train_cli.train)
app.command("evaluate")(evaluate_cli.evaluate)
app.command("predict")(predict_cli.predict)
app.command("serve")(serve_cli.serve)
app.command("server")(server_cli.server)
app.command("drift")(drift_cli.drift)
app.add_typer(pipeline_cli.app, name="pipeline")
app.add_typer(model_cli.app, name="model")
app.add_typer(deploy_cli.app, name="deploy")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(monitor_cli.alerts_app, name="alert")
app.add_typer(maintenance_cli.app, name="maintenance")
app.add_typer(token_cli.app, name="token")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"modelcycle {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """modelcycle: datasets and models from raw files to production, with the thread kept."""


@app.command()
def init(
    path: Annotated[
        Path, typer.Argument(help="Folder to make a workspace (created if missing).")
    ] = Path("."),
    store: Annotated[
        str | None, typer.Option(help="Metadata store URL (default: SQLite in .modelcycle/).")
    ] = None,
    blobs: Annotated[
        str | None, typer.Option(help="Blob store: a folder or s3://BUCKET/PREFIX.")
    ] = None,
    endpoint_url: Annotated[
        str | None, typer.Option(help="S3 endpoint URL for an S3-compatible server.")
    ] = None,
) -> None:
    """Create a workspace: writes modelcycle.toml and the local state folder."""
    from modelcycle.api import Workspace

    path.mkdir(parents=True, exist_ok=True)
    options = {"endpoint_url": endpoint_url} if endpoint_url else None
    ws = Workspace.create(path, store=store, blobs=blobs, blobs_options=options)
    console.print(f"Created workspace {ws.root}")
    console.print(f"  metadata: {ws.config.store_url}\n  blobs:    {ws.config.blobs_url}")
    console.print("Next: modelcycle dataset add NAME PATH")
    ws.close()


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="NAME@REF of a model version or a dataset version.")],
    json_out: JsonOpt = False,
    dot: Annotated[
        bool, typer.Option("--dot", help="Print Graphviz source (pipe to `dot -Tsvg`).")
    ] = False,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="model or dataset, when both have this name."),
    ] = None,
) -> None:
    """Show what a model or dataset version was made from, back to the raw files."""
    from modelcycle.data.refs import parse_ref
    from modelcycle.registry.lineage import lineage_dot, lineage_lines, model_lineage_lines

    with open_workspace() as ws:
        name = parse_ref(ref).name
        is_model = ws.models.store.model_id(name) is not None
        is_dataset = ws.store.get_dataset(name) is not None
        if kind not in (None, "model", "dataset"):
            raise UsageError(f"--kind {kind!r} is not model or dataset", hint="")
        if kind is None and is_model and is_dataset:
            raise UsageError(
                f"{name!r} names both a model and a dataset", hint="pass --kind model or dataset"
            )
        if kind is None and not is_model and not is_dataset:
            raise NotFoundError(
                f"no model or dataset named {name!r}",
                hint="`modelcycle model list` and `modelcycle dataset list` show the names",
            )
        if kind == "model" or (kind is None and is_model):
            graph = ws.models.lineage(ref)
            lines = model_lineage_lines(graph)
        else:
            graph = ws.datasets.lineage(ref).to_dict()
            lines = lineage_lines(graph)
    if json_out:
        print_json(graph)
    elif dot:
        sys.stdout.write(lineage_dot(graph))
    else:
        for line in lines:
            console.print(line, highlight=False, markup=False)


@app.command()
def fsck(
    quick: Annotated[
        bool, typer.Option("--quick", help="Check that blobs exist, skip hashing them.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify every version's references and blob hashes; exit 9 on any problem."""
    from modelcycle.core.errors import IntegrityError

    with open_workspace() as ws, progress(not json_out) as bar:
        report = ws.fsck(verify=not quick, progress=bar)
    if json_out:
        print_json(report.to_dict())
    else:
        console.print(
            f"Checked {report.versions} versions, {report.blobs_checked} blobs; "
            f"{report.unreferenced} unreferenced blob(s) (`modelcycle gc` removes them)."
        )
        for p in report.problems:
            console.print(f"  PROBLEM {p['ref']}: {p['problem']}")
    if not report.ok:
        raise IntegrityError(
            f"fsck found {len(report.problems)} problem(s)",
            hint="restore the blobs named above, or delete the versions that need them",
        )
    if not json_out:
        console.print("OK")


@app.command()
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed; remove nothing.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            help="Keep unreferenced blobs younger than this many seconds "
            "(an add in progress may still commit them)."
        ),
    ] = 3600.0,
    json_out: JsonOpt = False,
) -> None:
    """Remove blobs that no live version references."""
    with open_workspace() as ws:
        report = ws.gc(dry_run=dry_run, grace_seconds=grace)
    if json_out:
        print_json(report.to_dict())
        return
    verb = "Would remove" if dry_run else "Removed"
    console.print(
        f"{verb} {report.removed} blob(s), {human_bytes(report.bytes_freed)}; "
        f"kept {report.kept}; {report.skipped_young} younger than {grace:g}s left alone."
    )


@app.command()
def events(
    limit: Annotated[int, typer.Option(help="How many of the newest events.")] = 50,
    kind: Annotated[
        str | None, typer.Option(help="Only events whose kind starts with this.")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Only events whose subject starts with this.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only events by this actor, e.g. token:alice or an OS user.")
    ] = None,
    since: Annotated[
        dt.datetime | None, typer.Option(help="Only events at or after this time (UTC).")
    ] = None,
    until: Annotated[
        dt.datetime | None, typer.Option(help="Only events before this time (UTC).")
    ] = None,
    offset: Annotated[
        int, typer.Option(min=0, help="Skip this many of the newest matches (page back).")
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    """The audit log: every state change, who made it and when."""
    with open_workspace() as ws:
        rows = ws.events(
            limit=limit,
            kind=kind,
            subject=subject,
            actor=actor,
            since=since,
            until=until,
            offset=offset,
        )
    if json_out:
        print_json(
            [
                {
                    "id": e.id,
                    "at": e.at,
                    "actor": e.actor,
                    "kind": e.kind,
                    "subject": e.subject,
                    "payload": e.payload,
                }
                for e in rows
            ]
        )
        return
    table(
        ["when", "who", "what", "subject"], [[when(e.at), e.actor, e.kind, e.subject] for e in rows]
    )


@app.command()
def quickstart(
    path: Annotated[
        Path | None,
        typer.Argument(help="Folder for the demo workspace (default: a new temp folder)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Walk it against the platform server at this address instead (token "
            "from MODELCYCLE_TOKEN); the server must not hold the quickstart's names yet.",
        ),
    ] = None,
) -> None:
    """Walk the lifecycle on a bundled dataset: version, clean, validate, split, label,
    train, tune, evaluate, gate, promote, serve, monitor, retrain, trace lineage."""
    import os

    from modelcycle.api.quickstart import run_quickstart

    token = os.environ.get("MODELCYCLE_TOKEN") or None
    run_quickstart(path, say=console.print, url=url, token=token)


def main() -> None:
    run_app(app, "modelcycle")


if __name__ == "__main__":
    main()
