"""``modelcycle model …``: the model registry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.model_interop import export_cmd, import_mlflow_cmd
from modelcycle.cli.output import console, human_bytes, print_json, table
from modelcycle.cli.output import when as local_time
from modelcycle.core.errors import GateRefused, UsageError

app = typer.Typer(
    help="The model registry: register, show, alias, promote, roll back, retire, package, export.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
alias_app = typer.Typer(
    help="Move or remove aliases (champion, challenger, …).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(alias_app, name="alias")
app.command("export")(export_cmd)
app.command("import-mlflow")(import_mlflow_cmd)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
RefArg = Annotated[str, typer.Argument(help="NAME, NAME@3, NAME@ALIAS or NAME@latest.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-m", help="Why (recorded).")]


@app.command()
def register(
    run: Annotated[str, typer.Argument(help="The run that logged the model.")],
    name: Annotated[str, typer.Option("--name", help="Model name (created on first use).")],
    path: Annotated[str, typer.Option("--path", help="The run's model folder.")] = "models/model",
    description: Annotated[str | None, typer.Option("--description")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a run's logged model as the next version of NAME."""
    with open_workspace() as ws:
        v = ws.models.register(run, name, path=path, description=description)
    if json_out:
        print_json({"ref": v.ref, "version": v.version, "run_id": v.run_id})
        return
    console.print(f"Registered {v.ref} ({v.flavor}) from run {run[:8]}.")


@app.command("list")
def list_models(json_out: JsonOpt = False) -> None:
    """Registered models with their newest and production versions."""
    with open_workspace() as ws:
        rows = ws.models.models()
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("No models yet: `modelcycle model register RUN --name NAME` adds one.")
        return
    table(
        ["model", "versions", "latest", "production", "aliases"],
        [
            [
                r["name"],
                r["versions"],
                r["latest"],
                r["production"] or "",
                ", ".join(f"{a}→{n}" for a, n in r["aliases"].items()),
            ]
            for r in rows
        ],
    )


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Model name.")], json_out: JsonOpt = False
) -> None:
    """Versions of a model, oldest first."""
    with open_workspace() as ws:
        rows = ws.models.versions(name)
    if json_out:
        print_json(
            [
                {
                    "version": v.version,
                    "stage": v.stage,
                    "run_id": v.run_id,
                    "flavor": v.flavor,
                    "created_at": v.created_at.isoformat(),
                }
                for v in rows
            ]
        )
        return
    table(
        ["version", "stage", "flavor", "run", "created"],
        [
            [
                v.version,
                v.stage,
                v.flavor,
                (v.run_id or "")[:8],
                v.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for v in rows
        ],
    )


@app.command()
def show(ref: RefArg, json_out: JsonOpt = False) -> None:
    """A version: stage, aliases, signature, metrics, lineage, package files and size."""
    with open_workspace() as ws:
        info = ws.models.show(ref)
        info["evaluations"] = [e.to_dict() for e in ws.evaluations.list(info["ref"])]
    if json_out:
        print_json(info)
        return
    console.print(
        f"{info['ref']}  stage {info['stage']}  flavor {info['flavor']}"
        + (f"  aliases {', '.join(info['aliases'])}" if info["aliases"] else "")
    )
    lineage = info["lineage"]
    if lineage.get("run"):
        inputs = ", ".join(f"{i['ref']} ({i['role']})" for i in lineage.get("inputs", []))
        console.print(
            f"  run {lineage['run'][:8]} in {lineage.get('experiment')}; data: "
            f"{inputs or 'none logged'}"
        )
    console.print(f"  package: {len(info['files'])} files, {human_bytes(info['size_bytes'])}")
    for ev in info.get("evaluations", []):
        head = ", ".join(
            f"{k} {v:.4g}"
            for k, v in ev["metrics"].items()
            if k in ("accuracy", "roc_auc", "f1_macro", "rmse", "r2")
        )
        console.print(f"  evaluated on {ev['data']}: {head}", highlight=False)
    if info["metrics"]:
        table(
            ["metric", "value"],
            [
                [k, f"{v:.4g}" if isinstance(v, float) else v]
                for k, v in sorted(info["metrics"].items())
            ],
        )


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: Annotated[int, typer.Argument(help="Version number.")],
    reason: ReasonOpt = None,
) -> None:
    """Point ALIAS at VERSION (recorded in the history)."""
    with open_workspace() as ws:
        v = ws.models.set_alias(name, alias, version, reason)
    console.print(f"{name}@{alias} -> {v.ref}.")


@alias_app.command("remove")
def alias_remove(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias.")],
) -> None:
    """Remove an alias."""
    with open_workspace() as ws:
        ws.models.remove_alias(name, alias)
    console.print(f"Removed {name}@{alias}.")


@app.command()
def promote(
    ref: RefArg,
    to: Annotated[str, typer.Option("--to", help="staging, production or archived.")],
    gate: Annotated[
        Path | None,
        typer.Option("--gate", help="A gate file (YAML): thresholds, champion, slices."),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="The dataset version the gate evaluates on.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Override a refused gate or allow an unusual move (recorded)."
        ),
    ] = False,
    reason: ReasonOpt = None,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="Allow loading this pickled/code dependency; repeatable."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Move a version to a stage, after its gate passes; entering production archives
    the previous production version."""
    with open_workspace() as ws:
        try:
            result = ws.evaluations.promote(
                ref, to, gate=gate, data=data, force=force, reason=reason, trusted=trust or ()
            )
        except GateRefused as e:
            verdict = e.details["verdict"]
            if json_out:
                print_json({"promoted": False, "gate": verdict})
            else:
                _print_verdict(verdict)
            raise
    if json_out:
        print_json({"promoted": True, **result})
        return
    if "gate" in result:
        _print_verdict(result["gate"])
    archived = f"; archived {', '.join(result['archived'])}" if result["archived"] else ""
    console.print(f"{result['ref']}: {result['from']} -> {result['to']}{archived}.")


def _print_verdict(verdict: dict[str, Any]) -> None:
    against = f" against {verdict['champion']}" if verdict["champion"] else ""
    state = "passed" if verdict["passed"] else "REFUSED"
    table(
        ["", "condition", "observed"],
        [
            ["pass" if c["passed"] else "FAIL", c["requirement"], c["observed"]]
            for c in verdict["conditions"]
        ],
        title=f"gate {state}: {verdict['candidate']} on {verdict['data']}{against}",
    )


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="Also say which version was in production then (ISO time)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every registration, stage move and alias change, oldest first."""
    when = None
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            raise UsageError(
                f"--at {at!r} is not an ISO time", hint="e.g. 2026-11-23T14:00:00+00:00"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
    with open_workspace() as ws:
        rows = ws.models.history(name)
        holder = ws.models.in_stage_at(name, when) if when else None
    records: list[dict[str, Any]] = [
        {
            "at": r.at.isoformat(),
            "version": r.version,
            "kind": r.kind,
            "alias": r.alias,
            "from": r.from_stage,
            "to": r.to_stage,
            "actor": r.actor,
            "reason": r.reason,
            "forced": r.forced,
        }
        for r in rows
    ]
    if json_out:
        print_json({"history": records, **({"production_at": holder} if when else {})})
        return
    table(
        ["time", "version", "change", "by", "reason"],
        [
            [
                r["at"][:19],
                r["version"] or "",
                (
                    f"alias {r['alias']}"
                    if r["kind"].startswith("alias")
                    else f"{r['from'] or ''} -> {r['to']}" + (" (forced)" if r["forced"] else "")
                ),
                r["actor"],
                r["reason"] or "",
            ]
            for r in records
        ],
    )
    if when:
        console.print(
            f"In production at {when.isoformat()}: {f'{name}@{holder}' if holder else 'none'}"
        )


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: ReasonOpt = None,
) -> None:
    """Put the previous production version back in production."""
    with open_workspace() as ws:
        result = ws.models.rollback(name, reason=reason)
    console.print(f"Rolled back {name}: {result['from']} -> {result['to']} in production.")


@app.command()
def retire(ref: RefArg, reason: ReasonOpt = None) -> None:
    """Retire a version; `modelcycle gc` then frees its package (metadata stays)."""
    with open_workspace() as ws:
        v = ws.models.retire(ref, reason=reason)
    console.print(f"Retired {v.ref}; run `modelcycle gc` to free its package.")


def _days(option: str, text: str) -> float:
    from modelcycle.core.durations import parse_duration

    days = parse_duration(text, option, require_unit=True) / 86400
    if days <= 0:
        raise UsageError(f"{option} {text!r} must be longer than zero", hint="e.g. 30d")
    return days


@app.command("retire-stale")
def retire_stale(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Retire versions archived at least this long ago and unused since "
            "(30d, 12h, 90m, 2w).",
        ),
    ],
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model's versions.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be retired; retire nothing.")
    ] = False,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Retire archived versions that no alias or deployment uses and that served no
    prediction in that time; `modelcycle gc` then frees their packages."""
    from modelcycle.registry.retirement import last_prediction_at

    days = _days("--older-than", older_than)
    with open_workspace() as ws:
        if ws.models.last_traffic is None:
            ws.models.last_traffic = last_prediction_at(ws.deployments.store)
        report = ws.models.retire_stale(
            older_than_days=days, model=model, dry_run=dry_run, reason=reason
        )
    if json_out:
        print_json(report.to_dict())
        return
    scope = f" of {model!r}" if model else ""
    if not report.retired and not report.skipped:
        console.print(f"No archived versions{scope}.")
        return
    done = "would retire" if dry_run else "retired"
    table(
        ["version", "archived", "result", "reason"],
        [
            [i.ref, local_time(i.archived_at) if i.archived_at else "", result, i.reason]
            for result, items in ((done, report.retired), ("kept", report.skipped))
            for i in items
        ],
    )
    n = len(report.retired)
    if dry_run:
        console.print(f"Would retire {n} version(s){scope}; nothing was changed.")
    elif n:
        console.print(f"Retired {n} version(s){scope}; run `modelcycle gc` to free their packages.")
    else:
        console.print(f"Retired no version{scope}.")


@app.command()
def package(
    ref: RefArg, dest: Annotated[Path, typer.Argument(help="An empty or new folder.")]
) -> None:
    """Write the version's package (model.toml, model files, requirements.txt, Dockerfile)."""
    with open_workspace() as ws:
        out = ws.models.package(ref, dest)
    console.print(f"Wrote the package of {ref} to {out}.")
