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
    try:
        yield ws
    finally:
        ws.close()
