"""The ``modelcycle`` command line."""

from __future__ import annotations

import sys

# What every command prints when interrupted (the quick path and `cli.running` alike).
INTERRUPTED = "interrupted; nothing half-written is visible (run `modelcycle gc` to tidy)"


def main() -> None:
    """Entry point: quick commands first, then the full typer application."""
    from modelcycle.cli.quick import run_quick

    code = run_quick(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from modelcycle.cli.main import main as full_main

    full_main()
