"""Opening the workspace a command works on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelcycle.api import Workspace


@contextmanager
def open_workspace() -> Iterator[Workspace]:
    from modelcycle.api import Workspace

    ws = Workspace.open()
    if ws.remote is not None:
        _say_remote(ws)
    try:
        yield ws
    finally:
        ws.close()


def _say_remote(ws: Workspace) -> None:
    """A workspace in this folder that MODELCYCLE_URL overrides is worth a line on
    stderr: the command goes to the server, not to the folder the user stands in."""
    from modelcycle.cli.output import err_console
    from modelcycle.core.config import find_workspace_root
    from modelcycle.core.errors import WorkspaceNotFoundError

    try:
        local = find_workspace_root()
    except WorkspaceNotFoundError:
        return
    assert ws.remote is not None
    err_console.print(
        f"note: MODELCYCLE_URL is set: working on the server at {ws.remote.connection.url} "
        f"as {ws.actor}, not on the workspace at {local}",
        markup=False,
    )
