"""Small text helpers for messages."""

from __future__ import annotations

from collections.abc import Iterable


def suggest(word: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' when a known word is close to ``word``."""
    import difflib  # here: only error messages need it, and the quick CLI path never does

    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def human_bytes(n: int | None) -> str:
    """A byte count for people: ``1.5 MB`` (powers of 1000); empty for None."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
