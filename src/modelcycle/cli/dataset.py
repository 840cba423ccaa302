"""``modelcycle dataset …``: add, inspect, transform and compare dataset versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, human_bytes, print_json, progress, table, when
from modelcycle.cli.render import diff_lines, profile_rows, size_line

app = typer.Typer(
    help="Versioned datasets: add, show, clean, validate, split, diff.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
RefArg = Annotated[str, typer.Argument(help="NAME, NAME@3, NAME@TAG or NAME@HASH-PREFIX.")]
MessageOpt = Annotated[
    str | None, typer.Option("-m", "--message", help="A note stored with the version.")
]


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Dataset name (created on first add).")],
    path: Annotated[
        Path, typer.Argument(help="A table file (CSV, TSV, Parquet, JSONL, JSON) or a folder.")
    ],
    message: MessageOpt = None,
    format: Annotated[
        str | None, typer.Option("--format", help="csv, tsv, parquet, jsonl, json, excel or files.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a file or folder as the next version of a dataset."""
    with open_workspace() as ws, progress(not json_out) as bar:
        result = ws.datasets.add(name, path, message=message, format=format, progress=bar)
    if json_out:
        print_json(result.to_dict())
        return
    v = result.version
    if not result.created:
        console.print(
            f"{v.ref} unchanged: the content equals the latest version ({v.content_hash[:12]})."
        )
        return
    console.print(
        f"Added {v.ref} ({v.content_hash[:12]}): {size_line(v)}; "
        f"{human_bytes(result.bytes_added)} new, "
        f"{human_bytes(result.bytes_deduplicated)} deduplicated."
    )


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    path: Annotated[
        Path, typer.Argument(help="The folder or file to compare with the latest version.")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Show how a folder differs from the dataset's latest version (exit 0 either way)."""
    with open_workspace() as ws:
        changes = ws.datasets.status(name, path)
    if json_out:
        print_json({"clean": changes.clean, **changes.to_dict()})
        return
    if changes.clean:
        console.print(f"{path}: up to date with {name}")
        return
    for key, sign in (("added", "+"), ("removed", "-"), ("modified", "~")):
        for p in getattr(changes, key):
            console.print(f"  {sign} {p}")
    for a, b in changes.renamed:
        console.print(f"  → {a} -> {b}")


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """List datasets."""
    with open_workspace() as ws:
        rows = ws.datasets.catalog()
    if json_out:
        print_json({"datasets": rows})
        return
    table(
        ["name", "kind", "versions", "latest"],
        [[r["name"], r["kind"], r["versions"], r["latest"]] for r in rows],
    )


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")], json_out: JsonOpt = False
) -> None:
    """List the versions of a dataset, oldest first."""
    with open_workspace() as ws:
        items = ws.datasets.versions(name)
        tags = ws.store.tags(items[0].dataset_id) if items else {}
    if json_out:
        print_json(
            {
                "dataset": name,
                "versions": [
                    {
                        "version": v.version,
                        "ref": v.ref,
                        "content_hash": v.content_hash,
                        "kind": v.kind,
                        "num_rows": v.num_rows,
                        "num_files": v.num_files,
                        "size_bytes": v.size_bytes,
                        "step": v.step.get("op"),
                        "tags": tags.get(v.id, []),
                        "message": v.message,
                        "created_at": v.created_at,
                        "created_by": v.created_by,
                    }
                    for v in items
                ],
            }
        )
        return
    table(
        ["version", "hash", "size", "made by", "tags", "created", "message"],
        [
            [
                v.version,
                v.content_hash[:12],
                size_line(v),
                v.step.get("op"),
                ",".join(tags.get(v.id, [])),
                when(v.created_at),
                v.message or "",
            ]
            for v in items
        ],
    )


@app.command()
def show(ref: RefArg, json_out: JsonOpt = False) -> None:
    """Show a version: schema, size, parents, the step that made it, tags and profile."""
    with open_workspace() as ws:
        v = ws.datasets.resolve(ref)
        info = ws.datasets.describe(v)
    if json_out:
        print_json(info)
        return
    console.print(f"[bold]{info['ref']}[/bold]  {info['hash_algorithm']}:{info['content_hash']}")
    console.print(
        f"  {info['kind']}, {size_line(v)}; created {when(v.created_at)} by {v.created_by}"
    )
    if info["message"]:
        console.print(f"  message: {info['message']}", markup=False)
    if info["tags"]:
        console.print(f"  tags: {', '.join(info['tags'])}")
    parents = ", ".join(f"{p['ref']} ({p['role']})" for p in info["parents"]) or "none"
    console.print(f"  parents: {parents}", markup=False)
    console.print(f"  made by: {info['step'].get('op')}", markup=False)
    if v.profile:
        table(
            ["column", "type", "nulls", "distinct", "min", "mean", "max", "top values", "pii"],
            profile_rows(v.profile),
        )


@app.command()
def tag(
    ref: RefArg, tag_name: Annotated[str, typer.Argument(metavar="TAG", help="Tag name.")]
) -> None:
    """Point a tag at a version (moves it if it exists)."""
    with open_workspace() as ws:
        v = ws.datasets.tag(ref, tag_name)
    console.print(f"Tagged {v.ref} as {v.dataset}@{tag_name}")


@app.command()
def untag(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    tag_name: Annotated[str, typer.Argument(metavar="TAG", help="Tag name.")],
) -> None:
    """Remove a tag."""
    with open_workspace() as ws:
        ws.datasets.untag(name, tag_name)
    console.print(f"Removed tag {name}@{tag_name}")


@app.command()
def get(
    ref: RefArg,
    dest: Annotated[
        Path, typer.Argument(help="Destination folder or file (.parquet, .csv, .jsonl).")
    ],
    format: Annotated[
        str | None, typer.Option("--format", help="parquet, csv or jsonl for tables.")
    ] = None,
) -> None:
    """Materialize a version as files (file datasets) or a Parquet/CSV/JSONL file (tables)."""
    with open_workspace() as ws, progress() as bar:
        out = ws.datasets.get(ref, dest, format=format, progress=bar)
    console.print(f"Wrote {out}")


@app.command()
def delete(
    ref: Annotated[str, typer.Argument(help="NAME@REF for one version, NAME for all of them.")],
    force: Annotated[
        bool, typer.Option("--force", help="Delete even if other versions were made from it.")
    ] = False,
) -> None:
    """Delete versions (their lineage is kept; `modelcycle gc` frees their blobs)."""
    with open_workspace() as ws:
        gone = ws.datasets.delete(ref, force=force)
    console.print(f"Deleted {', '.join(v.ref for v in gone)}")


@app.command()
def apply(
    ref: RefArg,
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    message: MessageOpt = None,
    into: Annotated[
        str | None, typer.Option(help="Write the result to this dataset (default: the same).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a cleaning recipe on a version, producing a new version with lineage."""
    with open_workspace() as ws:
        result = ws.datasets.apply(ref, recipe, message=message, into=into)
    v = result.version
    if json_out:
        print_json({**result.to_dict(), "steps": v.step.get("steps", [])})
        return
    if not result.created:
        console.print(f"{v.ref} already holds this recipe's result (cached; nothing recomputed).")
        return
    console.print(f"Created {v.ref} ({v.content_hash[:12]}): {size_line(v)}")
    for s in v.step.get("steps", []):
        rows = (
            f"{s['rows_in']} -> {s['rows_out']} rows"
            if "rows_in" in s
            else f"{s['files_in']} -> {s['files_out']} files"
        )
        console.print(f"  step {s['step']} {s['name']}: {rows}")


@app.command()
def validate(
    ref: RefArg,
    rules: Annotated[Path, typer.Argument(help="Rules YAML file.")],
    json_out: JsonOpt = False,
) -> None:
    """Check validation rules on a version; exit 6 when any rule fails."""
    from modelcycle.core.errors import ValidationFailed

    with open_workspace() as ws:
        report = ws.datasets.validate(ref, rules)
    if json_out:
        print_json(report.to_dict())
    else:
        for f in report.failures:
            col = f" column {f['column']!r}" if f["column"] else ""
            console.print(
                f"FAIL rule {f['rule']} ({f['check']}){col}: {f['message']}", markup=False
            )
            if f["examples"]:
                console.print(f"     examples: {f['examples']}", markup=False)
    if not report.ok:
        raise ValidationFailed(
            f"{report.ref}: {len(report.failures)} of {report.rules} rule(s) failed",
            hint="fix the data (e.g. with a recipe) or adjust the rules",
        )
    if not json_out:
        console.print(f"{report.ref}: all {report.rules} rules pass")


@app.command()
def split(
    ref: RefArg,
    ratios: Annotated[str, typer.Option(help="2 or 3 fractions adding up to 1.")] = "0.7,0.15,0.15",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same split.")] = 0,
    stratify: Annotated[
        str | None, typer.Option(help="Keep this column's class shares in every part.")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Keep rows with equal values of this column together.")
    ] = None,
    names: Annotated[
        str | None,
        typer.Option(help="Part names, comma-separated (default train,validation,test)."),
    ] = None,
    message: MessageOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Split a table version into NAME-train / NAME-validation / NAME-test versions."""
    with open_workspace() as ws:
        parts = ws.datasets.split(
            ref,
            ratios,
            seed=seed,
            stratify=stratify,
            group=group,
            names=names.split(",") if names else None,
            message=message,
        )
    if json_out:
        print_json(
            {
                "parts": [
                    {
                        "ref": v.ref,
                        "part": v.step.get("part"),
                        "num_rows": v.num_rows,
                        "content_hash": v.content_hash,
                    }
                    for v in parts
                ]
            }
        )
        return
    for v in parts:
        console.print(f"{v.step.get('part'):>10}: {v.ref} ({v.num_rows} rows)")


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="The older version, NAME@REF.")],
    b: Annotated[str, typer.Argument(help="The newer version, NAME@REF.")],
    key: Annotated[
        str | None, typer.Option(help="Match rows by this column (else by whole-row hash).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """What changed between two versions: schema, rows, distributions, or files."""
    with open_workspace() as ws:
        d = ws.datasets.diff(a, b, key=key)
    if json_out:
        print_json(d)
        return
    for line in diff_lines(d):
        console.print(line, markup=False)
