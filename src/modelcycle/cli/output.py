"""Rendering for the CLI: JSON for machines, rich tables and progress bars for people."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from modelcycle.core.errors import ModelcycleError, exit_code
from modelcycle.core.progress import NullProgress
from modelcycle.core.progress import Progress as ProgressProtocol
from modelcycle.core.text import human_bytes

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

__all__ = ["console", "err_console", "human_bytes", "print_json", "progress", "table", "when"]


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def print_error(error: ModelcycleError) -> int:
    """Print ``error`` as every command reports one (no traceback); its exit code."""
    err_console.print(f"error: {error.message}", markup=False)
    if error.hint:
        err_console.print(f"  hint: {error.hint}", markup=False)
    return exit_code(error)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    t = Table(*columns, title=title, show_edge=False, header_style="bold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


def when(value: dt.datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class _RichProgress:
    bar: Progress
    task_id: Any = None

    def task(self, description: str, total: float | None = None) -> None:
        if self.task_id is not None:
            self.bar.update(self.task_id, visible=False)
        self.task_id = self.bar.add_task(description, total=total)

    def advance(self, amount: float = 1) -> None:
        if self.task_id is not None:
            self.bar.advance(self.task_id, amount)


@contextmanager
def progress(enabled: bool = True) -> Iterator[ProgressProtocol]:
    """A progress bar on a terminal; silent when stderr is piped or a file."""
    if not enabled or not err_console.is_terminal:
        yield NullProgress()
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with bar:
        yield _RichProgress(bar)
