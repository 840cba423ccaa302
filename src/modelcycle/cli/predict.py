"""``modelcycle predict MODEL@REF --input … --output …``: batch scoring into Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, progress


def predict(
    model: Annotated[str, typer.Argument(help="The model version: NAME@3, NAME@ALIAS, NAME.")],
    input_: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="A .csv/.tsv/.jsonl/.parquet file (optionally .gz/.bz2/.zst), or a table "
            "version NAME@REF.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The Parquet file to write.")],
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="local, ray or ray://HOST:PORT (default: local)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Parallel workers (default: the CPUs available)."),
    ] = None,
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            help="For the local executor: threads, processes, or auto (threads unless the "
            "model's predict is Python code).",
        ),
    ] = "auto",
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows", help="Rows per chunk (default: about 16 MB of input, at most 100000)."
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Copy this input column into the output (an id); repeatable."),
    ] = None,
    no_proba: Annotated[
        bool, typer.Option("--no-proba", help="Leave out the proba_<class> columns.")
    ] = False,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="Allow loading this pickled/code dependency; repeatable."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Score a file or a table version with a model version, streaming, into Parquet:
    kept columns, `prediction`, and `proba_<class>` for classifiers, in input order."""
    with open_workspace() as ws, progress(not json_out) as bar:
        result = ws.predict(
            model,
            input_,
            output,
            executor=executor,
            workers=workers,
            pool=pool,
            chunk_rows=chunk_rows,
            include_columns=keep or (),
            proba=not no_proba,
            trusted=trust or (),
            overwrite=overwrite,
            progress=bar,
        )
    if json_out:
        print_json(result.to_dict())
        return
    console.print(
        f"Scored {result.rows:,} rows of {result.source} with {result.model} in "
        f"{result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s, {result.executor}).",
        markup=False,
    )
    console.print(f"Wrote {result.output}: {', '.join(result.columns)}", markup=False)
