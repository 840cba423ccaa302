"""Running a typer application the way every modelcycle command ends: one clear line per
error (no traceback), one exit code per kind of error.

typer runs the application with ``standalone_mode=False`` so that `ModelcycleError` reaches
us; click's own errors (an unknown option or command, a missing argument) and an
interrupt then need handling here. typer 0.29 and later carry their own copy of click, so
the click classes are looked up through typer's public names, which name click's classes
in earlier releases and typer's copies in later ones.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from modelcycle.cli import INTERRUPTED
from modelcycle.cli.output import err_console, print_error
from modelcycle.core.errors import ModelcycleError

__all__ = ["INTERRUPTED", "run_app"]

_INTERRUPT_CODE = 130


def _click_exception() -> type | None:
    """The ClickException class this typer raises (its usage errors derive from it)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException":
            return cls
    return None


def _classes(*found: Any) -> tuple[type[BaseException], ...]:
    """The distinct exception classes among ``found`` (click's and typer's may differ)."""
    out: list[type[BaseException]] = []
    for cls in found:
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in out:
            out.append(cls)
    return tuple(out)


def _click_module_classes(name: str) -> list[Any]:
    try:
        import click.exceptions
    except ImportError:  # typer 0.29+ needs no click of its own
        return []
    return [getattr(click.exceptions, name, None)]


CLICK_ERRORS = _classes(_click_exception(), *_click_module_classes("ClickException"))
EXITS = _classes(typer.Exit, *_click_module_classes("Exit"))
ABORTS = _classes(typer.Abort, *_click_module_classes("Abort"))


def run_app(app: typer.Typer, prog_name: str, *, interrupted: str | None = INTERRUPTED) -> None:
    """Run ``app`` on the command line's arguments and exit with its code. An interrupt
    exits with 130, printing ``interrupted`` first unless it is None."""
    try:
        code = app(prog_name=prog_name, standalone_mode=False)
    except ModelcycleError as e:
        sys.exit(print_error(e))
    except EXITS as e:
        code = getattr(e, "exit_code", 0)
    except ABORTS:
        err_console.print("aborted")
        sys.exit(_INTERRUPT_CODE)
    except CLICK_ERRORS as e:
        e.show()  # type: ignore[attr-defined]
        sys.exit(int(getattr(e, "exit_code", 2)))
    except KeyboardInterrupt:
        code = _INTERRUPT_CODE
    # Without standalone mode, typer answers an interrupt or a `typer.Exit` with its code.
    if code == _INTERRUPT_CODE and interrupted is not None:
        err_console.print(interrupted)
    sys.exit(code if isinstance(code, int) else 0)
