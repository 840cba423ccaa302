"""``modelcycle deploy …``: deployments, their routes, prediction logs and exports."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table, when
from modelcycle.core.errors import UsageError

if TYPE_CHECKING:
    from modelcycle.deploy.service import DeploymentService, DeploymentStatus
    from modelcycle.store.deployments import DeploymentChange, DeploymentState

app = typer.Typer(
    help="Deployments: route traffic to model versions (canary, A/B, shadow), roll back, "
    "read prediction logs, export Kubernetes manifests.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(help="Deployment name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-m", help="Why (recorded).")]


@contextmanager
def _deployments() -> Iterator[DeploymentService]:
    with open_workspace() as ws:
        yield ws.deployments


@app.command()
def create(
    name: NameArg,
    model: Annotated[
        str, typer.Option("--model", help="The version to serve: NAME@3 or NAME@ALIAS.")
    ],
    sticky_header: Annotated[
        str | None,
        typer.Option("--sticky-header", help="Requests with the same value take the same route."),
    ] = None,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a deployment that sends all traffic to one model version."""
    with _deployments() as deployments:
        status = deployments.create(name, model, sticky_header=sticky_header, reason=reason)
    if json_out:
        print_json(status.to_dict())
        return
    console.print(f"Created deployment {name}.")
    _print_routes(status)


@app.command()
def route(
    name: NameArg,
    weights: Annotated[
        list[str],
        typer.Argument(help="REF=WEIGHT pairs, e.g. churn@7=90 churn@8=10 (one REF: 100%)."),
    ],
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set the weighted routes (canary, A/B); weights are positive and need not sum to 100."""
    parsed = parse_weights(weights)
    with _deployments() as deployments:
        status = deployments.route(name, parsed, reason=reason)
    if json_out:
        print_json(status.to_dict())
        return
    _print_routes(status)


@app.command()
def shadow(
    name: NameArg,
    refs: Annotated[
        list[str] | None,
        typer.Argument(help="Versions that get a copy of every request (not answered)."),
    ] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove these shadows (all, when none are named).")
    ] = False,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add shadow versions, or remove them with --remove."""
    with _deployments() as deployments:
        if remove:
            status = deployments.remove_shadow(name, refs or None, reason=reason)
        else:
            if not refs:
                raise UsageError("name the versions to shadow", hint="e.g. churn@9")
            status = deployments.shadow(name, refs, reason=reason)
    if json_out:
        print_json(status.to_dict())
        return
    _print_routes(status)


@app.command()
def status(name: NameArg, json_out: JsonOpt = False) -> None:
    """Routes with the versions they resolve to now, shadows, revision and recent changes."""
    with _deployments() as deployments:
        st = deployments.status(name)
    if json_out:
        print_json(st.to_dict())
        return
    header = f"{st.name}  serves {st.model}  revision {st.revision or '-'}"
    if st.sticky_header:
        header += f"  sticky on {st.sticky_header}"
    console.print(header)
    _print_routes(st)
    for problem in st.problems:
        console.print(f"  problem: {problem}")
    if st.history:
        console.print("Recent changes:")
        _print_history(st.history[-5:])


@app.command("list")
def list_deployments(json_out: JsonOpt = False) -> None:
    """Deployments with their routes."""
    with _deployments() as deployments:
        rows = deployments.list()
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        console.print("No deployments yet: `modelcycle deploy create NAME --model REF` makes one.")
        return
    table(
        ["deployment", "model", "routes", "shadows", "updated"],
        [
            [
                r.name,
                r.model,
                ", ".join(_route_text(x.ref, x.version, x.share) for x in r.routes),
                ", ".join(s.ref for s in r.shadows),
                when(r.updated_at),
            ]
            for r in rows
        ],
    )


@app.command()
def rollback(name: NameArg, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """Restore the routes as they were before their latest change."""
    with _deployments() as deployments:
        st = deployments.rollback(name, reason=reason)
    if json_out:
        print_json(st.to_dict())
        return
    console.print(f"Rolled back {name}.")
    _print_routes(st)


@app.command()
def delete(name: NameArg, reason: ReasonOpt = None) -> None:
    """Delete a deployment (its history and prediction logs stay)."""
    with _deployments() as deployments:
        deployments.delete(name, reason=reason)
    console.print(f"Deleted deployment {name}.")


@app.command()
def history(name: NameArg, json_out: JsonOpt = False) -> None:
    """Every change of a deployment, oldest first: who, when, what, why."""
    with _deployments() as deployments:
        rows = deployments.history(name)
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    _print_history(rows)


@app.command()
def export(
    name: NameArg,
    kubernetes: Annotated[
        Path,
        typer.Option("--kubernetes", help="A new or empty folder for manifests and Dockerfile."),
    ],
    image: Annotated[
        str | None, typer.Option("--image", help="Image name in the manifests.")
    ] = None,
    replicas: Annotated[int, typer.Option("--replicas", help="Minimum replicas.")] = 2,
    max_replicas: Annotated[int, typer.Option("--max-replicas")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Write Kubernetes manifests and an image build context for a deployment."""
    with _deployments() as deployments:
        result = deployments.export_kubernetes(
            name, kubernetes, image=image, replicas=replicas, max_replicas=max_replicas
        )
    if json_out:
        print_json(result.to_dict())
        return
    console.print(f"Wrote {result.folder}: Dockerfile, model/ ({result.serves}), kubernetes.yaml")
    for note in result.notes:
        console.print(f"  note: {note}")
    console.print(
        f"Next: docker build -t {result.image} {result.folder} && docker push {result.image}"
        f" && kubectl apply -f {result.manifests}"
    )


@app.command()
def predictions(
    target: Annotated[
        str, typer.Argument(help="Deployment name, model name or model ref (churn@7).")
    ],
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time or an age such as 30m, 2h, 7d.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time or an age.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="The newest N rows (0: all).")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Logged predictions, oldest first."""
    now = dt.datetime.now(dt.UTC)
    start = parse_time(since, now, "--since")
    end = parse_time(until, now, "--until")
    with _deployments() as deployments:
        df = deployments.predictions(target, start, end, limit=limit or None)
    if json_out:
        print_json(df.to_dicts())
        return
    if df.is_empty():
        console.print(f"No predictions logged for {target} in that time.")
        return
    shown = ["ts", "request_id", "model", "version", "route", "prediction", "latency_ms"]
    table(
        shown,
        [
            [_cell(row[c]) for c in shown]
            for row in df.select([c for c in shown if c in df.columns]).to_dicts()
        ],
    )


@app.command()
def feedback(
    path: Annotated[
        Path,
        typer.Argument(help='JSON Lines: {"request_id": …, "label": … (or "value"), "ts"?}'),
    ],
) -> None:
    """Add ground truth for logged predictions (the last feedback for a request wins)."""
    items: list[Any] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", hint="") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{number} is not JSON: {e.msg}", hint="") from e
    with _deployments() as deployments:
        n = deployments.feedback.add(items)
    console.print(f"Added {n} feedback items.")


# -- parsing and rendering -------------------------------------------------------------
def parse_weights(items: list[str]) -> dict[str, float]:
    """``["churn@7=90", "churn@8=10"]`` -> weights; one bare ref means all traffic."""
    if len(items) == 1 and "=" not in items[0]:
        return {items[0]: 100.0}
    out: dict[str, float] = {}
    for item in items:
        ref, sep, text = item.rpartition("=")
        if not sep or not ref:
            raise UsageError(f"{item!r} is not REF=WEIGHT", hint="e.g. churn@7=90 churn@8=10")
        try:
            weight = float(text)
        except ValueError:
            raise UsageError(
                f"{item!r}: the weight {text!r} is not a number", hint="e.g. churn@8=10"
            ) from None
        if ref in out:
            raise UsageError(f"{ref} is given twice", hint="name each ref once")
        out[ref] = weight
    return out


_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str | None, now: dt.datetime, option: str) -> dt.datetime | None:
    """An ISO time (naive = UTC) or an age before ``now`` such as ``30m``."""
    if text is None:
        return None
    age = _AGE.fullmatch(text.strip())
    if age:
        return now - dt.timedelta(seconds=float(age[1]) * _UNIT[age[2]])
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is neither an ISO time nor an age",
            hint="e.g. 2026-01-31T12:00:00Z, 30m, 2h or 7d",
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _route_text(ref: str, version: int | None, share: float | None) -> str:
    resolved = f" (v{version})" if version is not None and not ref.endswith(f"@{version}") else ""
    return f"{ref}{resolved} {share:.0%}" if share is not None else f"{ref}{resolved}"


def _print_routes(st: DeploymentStatus) -> None:
    rows = [
        ["route", r.ref, r.version or "?", f"{r.weight:g}", f"{r.share:.1%}", r.stage or "?"]
        for r in st.routes
        if r.weight is not None and r.share is not None
    ] + [["shadow", s.ref, s.version or "?", "", "", s.stage or "?"] for s in st.shadows]
    table(["", "ref", "version", "weight", "share", "stage"], rows)


def _state_text(state: DeploymentState | None) -> str:
    if state is None:
        return ""
    text = ", ".join(f"{ref}={w:g}" for ref, w in state.routes)
    if state.shadows:
        text += f"; shadows {', '.join(state.shadows)}"
    return text


def _print_history(rows: list[DeploymentChange]) -> None:
    table(
        ["time", "change", "routes", "by", "reason"],
        [[when(r.at), r.kind, _state_text(r.after), r.actor, r.reason or ""] for r in rows],
    )


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return when(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return value
