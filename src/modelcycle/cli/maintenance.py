"""``modelcycle maintenance …``: the closed loop's policies and runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table, when

if TYPE_CHECKING:
    from modelcycle.loop.service import MaintenanceService
    from modelcycle.store.maintenance import MaintenanceRow

app = typer.Typer(
    help="The closed loop: a deployment's policy (alert → retrain → gate → canary → promote "
    "or roll back) and the maintenance runs it made.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@contextmanager
def _service() -> Iterator[MaintenanceService]:
    with open_workspace() as ws:
        yield ws.maintenance


@app.command()
def policy(
    deployment: Annotated[str, typer.Argument(help="The deployment the policy is for.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Set the policy from this YAML file."),
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the policy.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show, set (--file) or remove (--delete) a deployment's maintenance policy.

    The YAML has the sections trigger, retrain, evaluate, canary, promote and
    min_interval; see the documentation of modelcycle.loop.policy."""
    with _service() as service:
        if delete:
            service.delete_policy(deployment)
            console.print(f"Removed the maintenance policy of {deployment}.")
            return
        current = service.set_policy(deployment, file) if file else service.policy(deployment)
    if json_out:
        print_json(current.to_dict())
        return
    d = current.to_dict()
    if file:
        console.print(f"Set the maintenance policy of {deployment}.")
    trigger = d["trigger"]
    console.print(
        f"trigger   alerts of {', '.join(trigger['monitors']) or 'any monitor of ' + deployment}"
        + (f" on {', '.join(trigger['rules'])}" if trigger["rules"] else "")
    )
    train = d["retrain"]["train"]
    data = train.get("data")
    console.print(
        f"retrain   {train.get('model', {}).get('estimator', '?')} on "
        f"{data if isinstance(data, str) else (data or {}).get('train')}"
        + (" + feedback-labelled traffic" if d["retrain"]["feedback"] else "")
    )
    console.print(f"gate      on {d['evaluate']['data']}")
    c = d["canary"]
    console.print(
        f"canary    {c['weight']:g}% until {c['min_requests']} requests (at most "
        f"{c['max_duration']}); success ≥ {c['success_rate']:.0%}, p99 ≤ {c['p99_factor']:g}× "
        f"champion; rollback after {c['max_failed_checks']} failed checks"
    )
    console.print(
        f"promote   alias {d['promote']['alias']}, stage {d['promote']['stage']}; at most one "
        f"run every {d['min_interval']}"
    )


@app.command("list")
def list_(
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="Only this deployment's.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Maintenance runs, newest first."""
    with _service() as service:
        runs = service.list(deployment=deployment, limit=limit)
    if json_out:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        console.print("No maintenance runs.")
        return
    table(
        ["run", "deployment", "state", "phase", "champion", "candidate", "started", "trigger"],
        [
            [
                str(r.id),
                r.deployment,
                r.state,
                r.phase,
                r.champion or "",
                r.candidate or "",
                when(r.started_at),
                _trigger(r),
            ]
            for r in runs
        ],
    )


def _trigger(run: MaintenanceRow) -> str:
    t = run.trigger
    if "alert" in t:
        return f"alert {t['alert']} ({t.get('rule')})"
    return str(t.get("by", ""))


@app.command()
def show(
    run_id: Annotated[int, typer.Argument(help="The run's number.")],
    json_out: JsonOpt = False,
) -> None:
    """A maintenance run with every step, decision and reason."""
    with _service() as service:
        run = service.get(run_id)
    if json_out:
        print_json(run.to_dict())
        return
    console.print(
        f"Maintenance run {run.id} of {run.deployment}: {run.state} "
        f"(trigger: {_trigger(run)}; started {when(run.started_at)} by {run.started_by})"
    )
    console.print(f"champion {run.champion or '–'}, candidate {run.candidate or '–'}")
    if run.reason:
        console.print(f"reason: {run.reason}")
    for step in run.steps:
        console.print(f"  {step.get('at', '')[:19]}  {step['step']:<15} {_describe(step)}")


def _describe(step: dict[str, Any]) -> str:
    kind = step["step"]
    if kind == "retrained":
        return f"{step['candidate']} from run {step['run']} on {step['data']} (+{step['feedback_rows']} feedback rows)"
    if kind == "gated":
        return "passed" if step.get("passed") else "REFUSED"
    if kind == "canary_started":
        return f"{step['candidate']} at {step['weight']}% beside {step['champion']}"
    if kind == "canary_check":
        conditions = step.get("conditions") or []
        texts = [str(c["text"]) for c in conditions if isinstance(c, dict)]
        verdict = "passed" if step.get("passed") else "FAILED"
        return f"#{step['n']} {verdict}: " + "; ".join(texts)
    if kind == "promoted":
        return f"{step['candidate']} is {step['alias']} ({step['canary_requests']} canary requests)"
    return str(step.get("reason", ""))


@app.command()
def start(
    deployment: Annotated[str, typer.Argument(help="The deployment to maintain now.")],
    json_out: JsonOpt = False,
) -> None:
    """Start a maintenance run by hand (retrain → gate → canary); `modelcycle server`
    carries its canary on."""
    with _service() as service:
        run = service.start(deployment)
    if json_out:
        print_json(run.to_dict())
        return
    console.print(f"Maintenance run {run.id} of {deployment}: {run.state} ({run.phase}).")
    if run.reason:
        console.print(f"reason: {run.reason}")
