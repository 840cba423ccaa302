"""How long work reports progress without knowing who shows it (the CLI draws a bar)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def task(self, description: str, total: float | None = None) -> None:
        """Start a new phase of ``total`` units (None when unknown)."""

    def advance(self, amount: float = 1) -> None:
        """Count ``amount`` units of the current phase as done."""


class NullProgress:
    """Reports nothing (the default for the Python API and for piped output)."""

    def task(self, description: str, total: float | None = None) -> None:
        return None

    def advance(self, amount: float = 1) -> None:
        return None
