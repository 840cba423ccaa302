"""Sign-in redirects stay on the site."""

from __future__ import annotations

import pytest

from modelcycle.core.errors import NotFoundError
from modelcycle.server.ui.core import local_path, number


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/runs/compare?ids=a&ids=b", "/runs/compare?ids=a&ids=b"),
        ("/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("runs", "/"),
        ("/a\\b", "/"),
    ],
)
def test_only_paths_on_this_site(target: str, expected: str) -> None:
    assert local_path(target) == expected


@pytest.mark.parametrize("text", ["²", "0", "-1", "1.5", "99999999999999999999", ""])
def test_ids_in_urls_are_plain_64_bit_numbers(text: str) -> None:
    with pytest.raises(NotFoundError):
        number(text, "run")
    assert number("42", "run") == 42
