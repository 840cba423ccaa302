"""Dataset refs: ``NAME``, ``NAME@3``, ``NAME@latest``, ``NAME@<tag>``, ``NAME@<hash prefix>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelcycle.core.errors import RefError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", re.ASCII)
_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", re.ASCII)
HASH_PREFIX_RE = re.compile(r"[0-9a-f]{4,128}")
_DIGITS = re.compile(r"[0-9]+")
# Version numbers are 64-bit integers in every store.
MAX_VERSION = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed ref. ``selector`` is None for the latest version."""

    name: str
    selector: str | None = None

    @property
    def number(self) -> int | None:
        if self.selector is not None and _DIGITS.fullmatch(self.selector):
            return int(self.selector)
        return None

    def __str__(self) -> str:
        return self.name if self.selector is None else f"{self.name}@{self.selector}"


def check_name(name: str, what: str = "dataset name") -> str:
    if not NAME_RE.fullmatch(name):
        raise RefError(
            f"{name!r} is not a valid {what}",
            hint="use letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(at most 200 characters)",
        )
    return name


def check_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag) or _DIGITS.fullmatch(tag) is not None or tag == "latest":
        raise RefError(
            f"{tag!r} cannot be a tag",
            hint="a tag uses letters, digits, '.', '_' or '-', is not all digits and is not 'latest'",
        )
    return tag


def parse_ref(text: str) -> Ref:
    """Parse ``NAME[@SELECTOR]``; raises RefError naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise RefError("empty dataset ref", hint="write NAME, NAME@3, NAME@TAG or NAME@HASH")
    name, sep, selector = text.strip().partition("@")
    check_name(name)
    if not sep:
        return Ref(name)
    if not selector:
        raise RefError(
            f"{text!r} has nothing after '@'",
            hint="write NAME@3, NAME@latest, NAME@TAG or NAME@HASH",
        )
    if selector == "latest":
        return Ref(name)
    if _DIGITS.fullmatch(selector):
        # Compared as text first: int() refuses numbers of more than 4300 digits.
        digits = selector.lstrip("0")
        if len(digits) > len(str(MAX_VERSION)) or int(digits or "0") > MAX_VERSION:
            raise RefError(
                f"{text!r}: no version number is that big",
                hint=f"write {name}@latest for the newest version",
            )
        if int(selector) < 1:
            raise RefError(f"{text!r}: versions are numbered from 1", hint=f"try {name}@1")
        return Ref(name, str(int(selector)))
    if not _TAG_RE.fullmatch(selector):
        raise RefError(
            f"{text!r}: {selector!r} is neither a version number, a tag nor a hash prefix",
            hint="write NAME@3, NAME@latest, NAME@TAG or NAME@HASH",
        )
    return Ref(name, selector)
