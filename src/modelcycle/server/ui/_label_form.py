"""The annotation form: a label value from the posted fields, and the fields' contents
from a value (to pre-fill the form with the annotator's own label or the model's
suggestion, or to show a refused post again).

Fields by schema kind (every kind works as a plain HTML form, without JavaScript):

- classification: ``value`` (radio buttons; checkboxes, repeated, for multi-label)
- number: ``value``
- boxes: rows of ``box-label``, ``box-x``, ``box-y``, ``box-w``, ``box-h`` (pixels)
- spans: rows of ``span-label``, ``span-start``, ``span-end`` (character offsets)

A row whose numbers are all blank is no box (or span); the form carries a few blank
rows so boxes can be added without JavaScript. The labeling service checks the value
against the schema; this module only turns text fields into numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import InputDataError, UsageError

if TYPE_CHECKING:
    from starlette.datastructures import FormData

    from modelcycle.labeling.schema import LabelSchema

ROW_FIELDS = {"boxes": ("x", "y", "w", "h"), "spans": ("start", "end")}
ROW_PREFIX = {"boxes": "box", "spans": "span"}
BLANK_ROWS = 3


@dataclass
class Filled:
    """What the form's fields hold."""

    selected: list[str] = field(default_factory=list)  # chosen classes
    number: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)  # boxes or spans


def _text(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def from_value(schema: LabelSchema, value: Any) -> Filled:
    if value is None:
        return Filled()
    if schema.kind == "classification":
        return Filled(selected=[str(v) for v in value] if isinstance(value, list) else [str(value)])
    if schema.kind == "number":
        return Filled(number=_text(value))
    names = ("label", *ROW_FIELDS[schema.kind])
    return Filled(rows=[{k: _text(item.get(k, "")) for k in names} for item in value or []])


def from_form(schema: LabelSchema, form: FormData) -> Filled:
    if schema.kind == "classification":
        return Filled(selected=[str(v) for v in form.getlist("value")])
    if schema.kind == "number":
        return Filled(number=str(form.get("value", "")))
    return Filled(rows=_rows(schema.kind, form))


def _rows(kind: str, form: FormData) -> list[dict[str, str]]:
    prefix, names = ROW_PREFIX[kind], ("label", *ROW_FIELDS[kind])
    columns = {k: [str(v) for v in form.getlist(f"{prefix}-{k}")] for k in names}
    n = max(len(c) for c in columns.values())
    return [{k: (columns[k][i] if i < len(columns[k]) else "") for k in names} for i in range(n)]


def value(schema: LabelSchema, form: FormData, where: str) -> Any:
    """The label the form gives (checked against the schema later, by the service)."""
    if schema.kind == "classification":
        chosen = [str(v) for v in form.getlist("value")]
        if schema.multi_label:
            return chosen
        if not chosen or not chosen[0]:
            raise UsageError(
                f"{where}: no label was chosen",
                hint=f"choose one of {', '.join(schema.labels)} (keys 1-9), or skip the task",
            )
        return chosen[0]
    if schema.kind == "number":
        text = str(form.get("value", "")).strip()
        if not text:
            raise UsageError(f"{where}: no number was given", hint="type a number, or skip")
        return text
    out = []
    item = "box" if schema.kind == "boxes" else "span"
    numbers = ROW_FIELDS[schema.kind]
    for n, row in enumerate(_rows(schema.kind, form), start=1):
        given = [row[k].strip() for k in numbers]
        if not any(given):
            continue
        if not all(given):
            missing = ", ".join(k for k, v in zip(numbers, given, strict=True) if not v)
            raise InputDataError(
                f"{where}: {item} {n} has no {missing}",
                hint=f"give {', '.join(numbers)} for every {item}, or clear the whole row",
            )
        parsed: dict[str, Any] = {"label": row["label"]}
        for k, text in zip(numbers, given, strict=True):
            parsed[k] = _number(text, f"{where}: {item} {n}, {k}", whole=schema.kind == "spans")
        out.append(parsed)
    return out


def _number(text: str, where: str, *, whole: bool) -> float | int:
    try:
        x = float(text)
    except ValueError:
        raise InputDataError(f"{where}: {text!r} is not a number", hint="type digits") from None
    if not math.isfinite(x):
        raise InputDataError(f"{where}: {text!r} is not a finite number", hint="type digits")
    if whole:
        if not x.is_integer():
            raise InputDataError(
                f"{where}: {text!r} is not a whole number",
                hint="span offsets count characters",
            )
        return int(x)
    return x
