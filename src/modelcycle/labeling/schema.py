"""Label schemas, and the one in-memory form of tasks, annotations and predictions.

A schema says what a label is. Four kinds:

========================  ===============================================  ==================
kind                      a value is                                       over
========================  ===============================================  ==================
``classification``        one label name (``multi_label: true``: a list)   rows or files
``spans``                 ``[{"start": 0, "end": 5, "label": "PER"}]``     a text column
``boxes``                 ``[{"label": "cat", "x":, "y":, "w":, "h":}]``   image files
``number``                a float (optionally within minimum/maximum)      rows or files
========================  ===============================================  ==================

Box coordinates are pixels from the image's top-left corner. Every value that enters
modelcycle goes through :meth:`LabelSchema.validate`, which normalizes it and raises
:class:`InputDataError` naming the task and the field when it does not fit.

:class:`ProjectSnapshot` is what import and export formats read and write: the formats
never touch the stores.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.data.yamlio import load_yaml, suggest

KINDS = ("classification", "spans", "boxes", "number")


@dataclass(frozen=True)
class LabelSchema:
    kind: str
    labels: tuple[str, ...] = ()
    field: str | None = None  # the column labeled (text for spans); None for files
    multi_label: bool = False
    minimum: float | None = None
    maximum: float | None = None
    name: str = "label"  # the output column, and Label Studio's from_name

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(
                f"unknown label kind {self.kind!r}{suggest(self.kind, KINDS)}",
                hint=f"use one of: {', '.join(KINDS)}",
            )
        if self.kind != "number" and not self.labels:
            raise UsageError(
                f"a {self.kind} schema needs a list of labels",
                hint="add `labels: [a, b, ...]` to the schema",
            )
        if len(set(self.labels)) != len(self.labels):
            dupes = sorted({x for x in self.labels if self.labels.count(x) > 1})
            raise UsageError(
                f"the schema lists labels more than once: {', '.join(dupes)}",
                hint="list each label once",
            )
        if self.kind == "spans" and not self.field:
            raise UsageError(
                "a spans schema needs `field`: the text column its spans point into",
                hint="add `field: text` (the column's name) to the schema",
            )
        if self.multi_label and self.kind != "classification":
            raise UsageError(
                "multi_label applies to classification only", hint="remove multi_label"
            )

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, where: str = "schema") -> LabelSchema:
        if not isinstance(data, dict):
            raise UsageError(
                f"{where} must be a mapping with at least `kind`",
                hint="e.g. {kind: classification, labels: [cat, dog]}",
            )
        known = {"kind", "labels", "field", "multi_label", "minimum", "maximum", "name"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"{where}: unknown key {unknown[0]!r}{suggest(unknown[0], known)}",
                hint=f"schema keys are: {', '.join(sorted(known))}",
            )
        if "kind" not in data:
            raise UsageError(f"{where} has no `kind`", hint=f"use one of: {', '.join(KINDS)}")
        labels = data.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str | int) for x in labels):
            raise UsageError(f"{where}: `labels` must be a list of names", hint="labels: [a, b]")
        return cls(
            kind=str(data["kind"]),
            labels=tuple(str(x) for x in labels),
            field=str(data["field"]) if data.get("field") is not None else None,
            multi_label=bool(data.get("multi_label", False)),
            minimum=_float_or_none(data.get("minimum"), f"{where}: minimum"),
            maximum=_float_or_none(data.get("maximum"), f"{where}: maximum"),
            name=str(data.get("name") or "label"),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelSchema:
        return cls.from_dict(load_yaml(Path(path), UsageError), str(path))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.labels:
            out["labels"] = list(self.labels)
        if self.field:
            out["field"] = self.field
        if self.multi_label:
            out["multi_label"] = True
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out

    # -- values ----------------------------------------------------------------------
    def validate(self, value: Any, where: str, *, image_size: tuple[int, int] | None = None) -> Any:
        """The normalized form of ``value``; InputDataError naming ``where`` if it does not fit.

        ``where`` names the task (and the annotation) for the message. ``image_size`` is
        (width, height) of the task's image, used to check boxes.
        """
        if self.kind == "classification":
            return self._classification(value, where)
        if self.kind == "number":
            return self._number(value, where)
        if self.kind == "spans":
            return [self._span(s, f"{where}, span {i}") for i, s in enumerate(_list(value, where))]
        return [
            self._box(b, f"{where}, box {i}", image_size) for i, b in enumerate(_list(value, where))
        ]

    def _label(self, name: Any, where: str) -> str:
        if isinstance(name, bool) or not isinstance(name, str | int):
            raise InputDataError(
                f"{where}: a label must be a name, got {name!r}",
                hint=f"the schema's labels are: {', '.join(self.labels)}",
            )
        text = str(name)
        if text not in self.labels:
            raise InputDataError(
                f"{where}: label {text!r} is not in the schema{suggest(text, self.labels)}",
                hint=f"the schema's labels are: {', '.join(self.labels)}; "
                "fix the annotation or add the label to the schema",
            )
        return text

    def _classification(self, value: Any, where: str) -> str | list[str]:
        if self.multi_label:
            names = [value] if isinstance(value, str) else _list(value, where)
            return sorted({self._label(n, where) for n in names})
        if isinstance(value, list):
            if len(value) != 1:
                raise InputDataError(
                    f"{where}: expected one label, got {len(value)}",
                    hint="this schema is single-label; set multi_label: true to allow several",
                )
            value = value[0]
        return self._label(value, where)

    def _number(self, value: Any, where: str) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise InputDataError(
                f"{where}: expected a number, got {value!r}", hint="give a numeric value"
            ) from None
        if not math.isfinite(x):
            raise InputDataError(f"{where}: {x} is not a finite number", hint="give a real number")
        if self.minimum is not None and x < self.minimum:
            raise InputDataError(
                f"{where}: {x} is below the schema's minimum {self.minimum}",
                hint="fix the value or widen the schema",
            )
        if self.maximum is not None and x > self.maximum:
            raise InputDataError(
                f"{where}: {x} is above the schema's maximum {self.maximum}",
                hint="fix the value or widen the schema",
            )
        return x

    def _span(self, span: Any, where: str) -> dict[str, Any]:
        if not isinstance(span, dict):
            raise InputDataError(
                f"{where}: a span must be a mapping with start, end and label",
                hint='e.g. {"start": 0, "end": 5, "label": "PER"}',
            )
        for key in ("start", "end", "label"):
            if key not in span:
                raise InputDataError(f"{where}: span has no {key!r}", hint="give start, end, label")
        start, end = _int(span["start"], f"{where}: start"), _int(span["end"], f"{where}: end")
        if not 0 <= start < end:
            raise InputDataError(
                f"{where}: start {start} and end {end} do not make a span",
                hint="need 0 <= start < end (character offsets, end exclusive)",
            )
        out: dict[str, Any] = {
            "start": start,
            "end": end,
            "label": self._label(span["label"], where),
        }
        if span.get("text") is not None:
            out["text"] = str(span["text"])
        return out

    def _box(self, box: Any, where: str, image_size: tuple[int, int] | None) -> dict[str, Any]:
        if not isinstance(box, dict):
            raise InputDataError(
                f"{where}: a box must be a mapping with label, x, y, w, h",
                hint='e.g. {"label": "cat", "x": 10, "y": 20, "w": 50, "h": 40} (pixels)',
            )
        for key in ("label", "x", "y", "w", "h"):
            if key not in box:
                raise InputDataError(f"{where}: box has no {key!r}", hint="give label, x, y, w, h")
        x, y, w, h = (self._number_field(box[k], f"{where}: {k}") for k in ("x", "y", "w", "h"))
        if w <= 0 or h <= 0:
            raise InputDataError(
                f"{where}: width {w} and height {h} must be positive", hint="fix the box"
            )
        if image_size is not None:
            width, height = image_size
            tol = 0.5  # rounding in exported pixel coordinates
            if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
                raise InputDataError(
                    f"{where}: box ({x:g}, {y:g}, {w:g}x{h:g}) lies outside the "
                    f"{width}x{height} image",
                    hint="boxes are pixels from the top-left corner and must fit in the image",
                )
        return {"label": self._label(box["label"], where), "x": x, "y": y, "w": w, "h": h}

    @staticmethod
    def _number_field(value: Any, where: str) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise InputDataError(f"{where}: expected a number, got {value!r}", hint="") from None
        if not math.isfinite(x):
            raise InputDataError(f"{where}: {x} is not finite", hint="give a real number")
        return x


def _float_or_none(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where} must be a number, got {value!r}", hint="") from None


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InputDataError(f"{where}: expected a whole number, got {value!r}", hint="")
    return int(value)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InputDataError(f"{where}: expected a list, got {type(value).__name__}", hint="")
    return list(value)


# -- the exchange form -------------------------------------------------------------------
@dataclass
class TaskData:
    """One thing to label: a row (key = row number as text) or a file (key = its path)."""

    key: str
    data: dict[str, Any]  # the row's fields; for files {"image"/"file": path}
    meta: dict[str, Any] = field(default_factory=dict)  # width/height, external ids


@dataclass
class PredictionData:
    task_key: str
    model: str  # "name@version" of a registered model, or a callable's name
    value: Any
    score: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnnotationData:
    task_key: str
    annotator: str
    value: Any
    created_at: dt.datetime | None = None
    prediction: int | None = None  # index into ProjectSnapshot.predictions it started from
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProjectSnapshot:
    """A project's content as the import/export formats see it."""

    schema: LabelSchema
    tasks: list[TaskData] = field(default_factory=list)
    annotations: list[AnnotationData] = field(default_factory=list)
    predictions: list[PredictionData] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
