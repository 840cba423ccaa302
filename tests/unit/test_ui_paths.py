"""Sign-in redirects stay on the site."""

from __future__ import annotations

import pytest

from modelcycle.server.ui.core import local_path


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
