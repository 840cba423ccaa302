"""Reading the YAML files users write (recipes, rules) with errors that name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelcycle.core.errors import NotFoundError, UsageError
from modelcycle.core.text import suggest

__all__ = ["load_yaml", "suggest"]


def load_yaml(path: str | Path, error: type[UsageError]) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {path}: {e}", hint="it must be a UTF-8 YAML file") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e)
        raise error(
            f"{path} is not valid YAML{where}: {problem}",
            hint="fix the YAML syntax (indentation, colons, quotes)",
        ) from e
