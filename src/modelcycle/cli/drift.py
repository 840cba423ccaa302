"""``modelcycle drift REFERENCE CURRENT``: per-column drift, the dataset verdict, a report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table
from modelcycle.core.errors import UsageError, ValidationFailed

if TYPE_CHECKING:
    pass

T = TypeVar("T")


def drift(
    reference: Annotated[
        str, typer.Argument(help="The reference: a dataset ref (NAME@REF) or a Parquet/CSV file.")
    ],
    current: Annotated[
        str,
        typer.Argument(
            help="The current data: a dataset ref, a Parquet/CSV file, or deployment:NAME[:1h] "
            "(a deployment's logged inputs over the last hour or the window given)."
        ),
    ],
    columns: Annotated[
        str | None,
        typer.Option("--columns", help="Comma-separated columns to compare (default: all)."),
    ] = None,
    tests: Annotated[
        list[str] | None,
        typer.Option(
            "--test",
            help="A test for every column it can check (`psi`), or for one column "
            "(`age=ks`); repeatable.",
        ),
    ] = None,
    thresholds: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="The threshold of the --test for every column (`0.2`), or for one column "
            "(`age=0.01`); repeatable.",
        ),
    ] = None,
    kinds: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help="Force a column's kind (`zip=categorical`): numerical, categorical, text, "
            "embedding; repeatable.",
        ),
    ] = None,
    prediction: Annotated[
        str | None,
        typer.Option("--prediction", help="The column of model outputs (prediction drift)."),
    ] = None,
    drift_share: Annotated[
        float,
        typer.Option("--drift-share", help="Share of drifted columns that makes dataset drift."),
    ] = 0.5,
    multivariate: Annotated[
        bool,
        typer.Option("--multivariate", help="Also check PCA reconstruction error."),
    ] = False,
    no_sketch: Annotated[
        bool,
        typer.Option("--no-sketch", help="Read the reference's rows even if a sketch is stored."),
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
    ] = None,
    fail_on_drift: Annotated[
        bool,
        typer.Option("--fail-on-drift", help="Exit with code 6 when the dataset drifts."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Compare CURRENT with REFERENCE column by column (Evidently's default tests)."""
    test, per_test = _split(tests or [], "--test", str)
    threshold, per_threshold = _split(thresholds or [], "--threshold", _float)
    _, per_kind = _split(kinds or [], "--kind", str, allow_global=False)
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    with open_workspace() as ws:
        service = ws.monitoring
        result = service.drift(
            reference,
            current,
            columns=wanted,
            test=test,
            tests=per_test,
            threshold=threshold,
            thresholds=per_threshold,
            kinds=per_kind,
            prediction=prediction,
            drift_share=drift_share,
            multivariate=multivariate,
            use_sketch=not no_sketch,
        )
        written = service.report(result, report) if report else None
    if json_out:
        out: dict[str, Any] = result.to_dict()
        if written:
            out["report"] = str(written)
        print_json(out)
    else:
        _print(result, written)
    if fail_on_drift and result.dataset_drift:
        raise ValidationFailed(
            f"dataset drift: {len(result.drifted_columns)} of {len(result.checked)} columns "
            f"drifted ({', '.join(result.drifted_columns[:10])})",
            hint="look at the report (--report drift.html); retrain or update the reference",
        )


def _print(result: Any, written: Path | None) -> None:
    from modelcycle.monitoring.report import fmt

    if result.status == "no_data":
        verdict = "no data to check"
    else:
        verdict = "DRIFT" if result.dataset_drift else "no drift"
    console.print(
        f"{result.current} ({result.current_rows:,} rows) vs {result.reference} "
        f"({result.reference_rows:,} rows): {verdict}: {len(result.drifted_columns)} of "
        f"{len(result.checked)} columns drifted ({result.drift_share:.0%}; dataset drift at "
        f"{result.drift_share_threshold:.0%})",
        highlight=False,
        markup=False,
    )
    rows = []
    for c in result.columns:
        if c.status == "ok":
            mark = "DRIFT" if c.drifted else ""
            score = fmt(c.score) + (" (p)" if c.p_value is not None else "")
            rows.append([c.column, c.kind, c.test, score, fmt(c.threshold), mark, c.message or ""])
        else:
            rows.append([c.column, c.kind, "", "", "", c.status, c.message or ""])
    table(["column", "kind", "test", "score", "threshold", "drift", "note"], rows)
    mv = result.multivariate
    if mv is not None:
        state = "no data" if mv.status != "ok" else ("DRIFT" if mv.drifted else "no drift")
        console.print(
            f"multivariate (PCA reconstruction error): {state}; current {fmt(mv.current_error)}, "
            f"band {fmt(mv.lower)} to {fmt(mv.upper)}",
            highlight=False,
            markup=False,
        )
    if written:
        console.print(f"Report: {written}", highlight=False, markup=False)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError as e:
        raise UsageError(f"{text!r} is not a number", hint="write --threshold 0.2") from e


def _split(
    items: list[str], option: str, convert: Callable[[str], T], *, allow_global: bool = True
) -> tuple[T | None, dict[str, T]]:
    """(the value for every column, {column: value}) from ``VALUE`` and ``COLUMN=VALUE``."""
    every: T | None = None
    per: dict[str, T] = {}
    for item in items:
        column, sep, value = item.rpartition("=")
        if sep and column.strip():
            per[column.strip()] = convert(value.strip())
        elif allow_global and not sep:
            if every is not None:
                raise UsageError(
                    f"{option} given twice for every column",
                    hint=f"give one {option} VALUE, and COLUMN=VALUE for single columns",
                )
            every = convert(item.strip())
        else:
            raise UsageError(
                f"{option} {item!r}: write COLUMN=VALUE",
                hint=f"e.g. {option} age=" + ("ks" if option != "--threshold" else "0.01"),
            )
    return every, per
