"""``modelcycle monitor …`` and ``modelcycle alert …``: monitors, their results, alerts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table, when
from modelcycle.core.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from modelcycle.monitoring.monitors import MonitorRun, MonitorService
    from modelcycle.store.monitors import AlertRow

app = typer.Typer(
    help="Monitors: watch a deployment's traffic (drift, performance, operations) on a "
    "schedule and alert.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
alerts_app = typer.Typer(
    help="Alerts fired by monitors: list, show, acknowledge.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(help="Monitor name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@contextmanager
def _monitors() -> Iterator[MonitorService]:
    with open_workspace() as ws:
        yield ws.monitors


@app.command()
def create(
    name: Annotated[str | None, typer.Argument(help="Monitor name.")] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="The deployment to watch.")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option("--reference", "-r", help="The table version to compare with: NAME@REF."),
    ] = None,
    schedule: Annotated[str, typer.Option(help="How often it runs: 15m, 1h …")] = "15m",
    window: Annotated[str, typer.Option(help="How much recent traffic each run reads.")] = "1h",
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            help="drift, performance, estimated_performance, operations (repeat; default all).",
        ),
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule", help="Alert rule METRIC OP NUMBER, e.g. 'drift_share > 0.3' (repeat)."
        ),
    ] = None,
    debounce: Annotated[
        int, typer.Option("--for", help="Consecutive breaching runs before a rule fires.")
    ] = 1,
    cooldown: Annotated[
        str, typer.Option(help="Least time between two alerts of one rule: 0, 30m, 1h …")
    ] = "0",
    severity: Annotated[str, typer.Option(help="info, warning or critical.")] = "warning",
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            help="Where alerts go besides the event log: webhook=URL, slack=URL, file=PATH "
            "(repeat).",
        ),
    ] = None,
    metrics_url: Annotated[
        str | None,
        typer.Option(help="The model server's /metrics, for error rates and latency."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="The reference's label column (default: as trained).")
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", "-f", help="A YAML file with the monitor's settings."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a monitor of a deployment; its first run is due at once."""
    with _monitors() as monitors:
        if from_file is not None:
            info = monitors.create_from_spec(_read_yaml(from_file, name))
        else:
            if not (name and deployment and reference):
                raise UsageError(
                    "give the monitor's NAME, --deployment and --reference",
                    hint="e.g. modelcycle monitor create churn-watch --deployment churn "
                    "--reference churn-train@3 --rule 'drift_share > 0.3'; or --from-file "
                    "monitor.yaml",
                )
            info = monitors.create(
                name,
                deployment=deployment,
                reference=reference,
                checks=check,
                rules=rule or [],
                schedule=schedule,
                window=window,
                debounce=debounce,
                cooldown=cooldown,
                severity=severity,
                channels=channel or [],
                metrics_url=metrics_url,
                target=target,
            )
    if json_out:
        print_json(info.to_dict())
        return
    d = info.to_dict()
    console.print(
        f"Created monitor {info.name}: {d['deployment']} against {d['reference']}, every "
        f"{d['schedule']} over the last {d['window']}."
    )
    for r in d["rules"]:
        console.print(f"  rule  {r['rule']}  (for {r['for']}, cooldown {r['cooldown']})")
    console.print(
        f"Run it now with `modelcycle monitor run {info.name}`; `modelcycle server` runs it on "
        "schedule."
    )


def _read_yaml(path: Path, name: str | None) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", hint="check the path") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML: {e}", hint="fix the file") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a mapping of settings", hint="")
    if name:
        data["name"] = name
    return data


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """Every monitor, its last result and open alerts."""
    with _monitors() as monitors:
        infos = monitors.list()
    if json_out:
        print_json([i.to_dict() for i in infos])
        return
    if not infos:
        console.print("No monitors. Create one with `modelcycle monitor create`.")
        return
    rows = []
    for info in infos:
        last = info.last
        rows.append(
            [
                info.name,
                info.row.deployment,
                info.row.reference,
                info.to_dict()["schedule"],
                last.status if last else "never run",
                when(last.finished_at) if last else "",
                str(len(info.open_alerts)),
            ]
        )
    table(
        ["monitor", "deployment", "reference", "every", "last", "when", "open alerts"],
        rows,
    )


@app.command()
def show(
    name: NameArg,
    result: Annotated[
        int | None, typer.Option("--result", help="Show this result (default: the newest).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many recent results to list.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """A monitor's settings, recent results and open alerts; one result in detail."""
    with _monitors() as monitors:
        info = monitors.get(name)
        results = monitors.results(name, limit=limit)
        chosen = None
        if result is not None:
            chosen = monitors.store.result(result)
            if chosen is None or chosen.monitor_id != info.row.id:
                raise UsageError(
                    f"monitor {name} has no result {result}",
                    hint=f"list them with `modelcycle monitor show {name}`",
                )
        elif results:
            chosen = results[0]
        detail = monitors.detail(chosen) if chosen else {}
    if json_out:
        print_json(
            {
                **info.to_dict(),
                "results": [r.to_dict() for r in results],
                "result": chosen.to_dict() if chosen else None,
                "detail": detail,
            }
        )
        return
    d = info.to_dict()
    console.print(
        f"Monitor {name}: {d['deployment']} against {d['reference']}; every {d['schedule']} "
        f"over {d['window']}; checks {', '.join(d['checks'])}"
    )
    for r in d["rules"]:
        console.print(f"  rule  {r['rule']}  (for {r['for']}, cooldown {r['cooldown']})")
    for c in d["channels"]:
        console.print(f"  channel  {c['target']}")
    if results:
        table(
            ["result", "when", "status", "rows", "breaches"],
            [
                [str(r.id), when(r.finished_at), r.status, str(r.rows), ", ".join(r.breaches)]
                for r in results
            ],
            title="Recent results",
        )
    if chosen is not None:
        _print_result(chosen.id, chosen.values, chosen.error, detail)
    _print_alerts(info.open_alerts, title="Open alerts")


def _print_result(
    rid: int, values: dict[str, Any], error: str | None, detail: dict[str, Any]
) -> None:
    if error:
        console.print(f"Result {rid} failed: {error}")
    shown = {k: v for k, v in values.items() if not k.startswith("drift.")}
    if shown:
        table(
            ["figure", "value"],
            [[k, "–" if v is None else f"{v:.4g}"] for k, v in sorted(shown.items())],
            title=f"Result {rid}",
        )
    drift = detail.get("drift")
    if drift:
        table(
            ["column", "test", "statistic", "threshold", "drifted"],
            [
                [
                    c["column"],
                    str(c.get("test") or c.get("status")),
                    _num(c.get("statistic")),
                    _num(c.get("threshold")),
                    "yes" if c.get("drifted") else "no",
                ]
                for c in drift.get("columns", [])
            ],
            title="Drift per column",
        )


def _num(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.4g}"


@app.command()
def run(name: NameArg, json_out: JsonOpt = False) -> None:
    """Run a monitor once now (alerts fire and are delivered as on schedule)."""
    with _monitors() as monitors:
        outcome = monitors.run(name)
    if json_out:
        print_json(outcome.to_dict())
        return
    _print_run(outcome)


def _print_run(outcome: MonitorRun) -> None:
    r = outcome.result
    line = f"Monitor {outcome.monitor}: {r.status}, {r.rows} rows in the window"
    if r.status == "no_data":
        line += " (no traffic: no rule was checked)"
    console.print(line + ".")
    _print_result(r.id, r.values, r.error, {"drift": outcome.detail.get("drift")})
    for alert in outcome.fired:
        console.print(f"ALERT {alert.id} [{alert.severity}] {alert.message}")
    for aid in outcome.resolved:
        console.print(f"Resolved alert {aid}.")


@app.command()
def delete(name: NameArg) -> None:
    """Delete a monitor (its results and alerts stay for the record)."""
    with _monitors() as monitors:
        monitors.delete(name)
    console.print(f"Deleted monitor {name}.")


# -- alerts ------------------------------------------------------------------------------
@alerts_app.command("list")
def alerts_list(
    monitor: Annotated[str | None, typer.Option("--monitor", help="Only this monitor's.")] = None,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only alerts not resolved yet.")
    ] = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Alerts, newest first."""
    with _monitors() as monitors:
        found = monitors.alerts(monitor=monitor, open_only=open_only, limit=limit)
    if json_out:
        print_json([a.to_dict() for a in found])
        return
    if not found:
        console.print("No alerts.")
        return
    _print_alerts(found, title=None)


def _print_alerts(alerts: list[AlertRow], title: str | None) -> None:
    if not alerts:
        return
    table(
        ["id", "monitor", "rule", "value", "severity", "state", "fired"],
        [
            [
                str(a.id),
                a.monitor,
                a.rule,
                _num(a.value),
                a.severity,
                a.state + (f" by {a.acked_by}" if a.acked_by else ""),
                when(a.fired_at),
            ]
            for a in alerts
        ],
        title=title,
    )


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    note: Annotated[str | None, typer.Option("--note", "-m", help="Why, or what was done.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Acknowledge an alert: someone is on it (it stays open until the figures recover)."""
    with _monitors() as monitors:
        alert = monitors.acknowledge(alert_id, note=note)
    if json_out:
        print_json(alert.to_dict())
        return
    console.print(f"Acknowledged alert {alert.id} ({alert.rule} on {alert.monitor}).")


@alerts_app.command("show")
def alerts_show(
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    json_out: JsonOpt = False,
) -> None:
    """An alert and the monitor result that is its evidence."""
    with _monitors() as monitors:
        alert = monitors.store.alert(alert_id)
        if alert is None:
            raise NotFoundError(f"no alert with id {alert_id}", hint="see `modelcycle alert list`")
        result = monitors.store.result(alert.result_id)
        detail = monitors.detail(result) if result else {}
    if json_out:
        print_json({"alert": alert.to_dict(), "evidence": result.to_dict() if result else None})
        return
    console.print(f"Alert {alert.id} [{alert.severity}] {alert.state}: {alert.message}")
    console.print(f"Fired {when(alert.fired_at)}; evidence: result {alert.result_id}.")
    if result is not None:
        _print_result(result.id, result.values, result.error, detail)


@app.command("prometheus-rules")
def prometheus_rules(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the rules to this file (default: print)."),
    ] = None,
) -> None:
    """Prometheus alerting rules for every monitor's alert rules, plus one per monitor that
    fires when it stops running: for teams that route alerts through Alertmanager. They
    watch the gauges `modelcycle server` exports at /metrics."""
    import sys

    from modelcycle.monitoring.prometheus import dump_rules, rules_file

    with _monitors() as monitors:
        rules = rules_file(monitors.store.live())
    text = dump_rules(rules)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(
            f"cannot write {output}: {e.strerror}", hint="check --output and its folder"
        ) from None
    count = sum(len(g["rules"]) for g in rules["groups"])
    console.print(
        f"Wrote {count} alerting rules for {len(rules['groups'])} monitor(s) to {output}; "
        f"load it with `rule_files` in prometheus.yml (check it: promtool check rules {output})."
    )
