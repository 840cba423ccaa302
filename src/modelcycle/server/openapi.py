"""The platform server's OpenAPI document, as committed in ``docs/openapi.json``.

python -m modelcycle.server.openapi > docs/openapi.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def spec() -> dict[str, Any]:
    """The OpenAPI document of the app (built without opening a workspace)."""
    from modelcycle.server.app import create_app

    document: dict[str, Any] = create_app(Path(".")).openapi()
    return document


def render() -> str:
    return json.dumps(spec(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
