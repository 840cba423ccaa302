"""CSV and JSON Lines tables of classification and number labels: :func:`read_table` and
:func:`write_table` (the format follows the file's suffix, ``.csv`` or ``.jsonl``).

Columns ``key``, the task's data fields, ``annotator``, the label (the schema's name;
multi-label values joined with ``|`` in CSV), ``created_at``. When the snapshot has
predictions or unlabeled tasks a ``kind`` column says ``annotation`` / ``prediction``
(with ``model`` and ``score``) / ``task``. A data field whose name is one of those
columns is written as ``data.<name>``. CSV gives back data fields as text; JSON Lines
keeps their types.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from modelcycle.core.errors import InputDataError, UsageError
from modelcycle.labeling.formats._common import (
    _from_iso,
    _iso,
    _known,
    _read_text,
    _type_name,
    _write_text,
)
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    PredictionData,
    ProjectSnapshot,
    TaskData,
)

_TABLE_SUFFIXES = (".csv", ".jsonl")


def write_table(snap: ProjectSnapshot, path: Path) -> Path:
    """Write classification or number labels as CSV or JSON Lines (by ``path``'s suffix)."""
    schema = snap.schema
    suffix = _table_suffix(path)
    if schema.kind not in ("classification", "number"):
        raise UsageError(
            f"a {suffix[1:].upper()} table holds classification or number labels, not "
            f"{schema.kind}",
            hint="use Label Studio JSON, COCO or YOLO for spans and boxes",
        )
    if suffix == ".csv" and schema.multi_label and any("|" in x for x in schema.labels):
        raise UsageError(
            "a label contains '|', which joins multi-label values in CSV", hint="use .jsonl"
        )
    label_col = schema.name
    reserved = _reserved(label_col)
    columns: dict[str, str] = {}  # data field -> column
    for task in snap.tasks:
        for f in task.data:
            if f not in columns:
                columns[f] = f"data.{f}" if f in reserved or f.startswith("data.") else f
    anns: dict[str, list[AnnotationData]] = {}
    preds: dict[str, list[PredictionData]] = {}
    keys = {t.key for t in snap.tasks}
    for a in snap.annotations:
        anns.setdefault(_known(a.task_key, keys), []).append(a)
    for p in snap.predictions:
        preds.setdefault(_known(p.task_key, keys), []).append(p)
    with_kind = bool(snap.predictions) or any(
        t.key not in anns and t.key not in preds for t in snap.tasks
    )

    rows: list[dict[str, Any]] = []
    for task in snap.tasks:
        base = {"key": task.key, **{columns[f]: v for f, v in task.data.items()}}
        for a in anns.get(task.key, []):
            value = schema.validate(a.value, f"task {task.key!r}, annotator {a.annotator!r}")
            row = {**base, "annotator": a.annotator, label_col: value}
            row["created_at"] = _iso(a.created_at) if a.created_at is not None else None
            rows.append({**row, "kind": "annotation"} if with_kind else row)
        for p in preds.get(task.key, []):
            value = schema.validate(p.value, f"task {task.key!r}, prediction of {p.model!r}")
            rows.append(
                {**base, "kind": "prediction", "model": p.model, "score": p.score, label_col: value}
            )
        if task.key not in anns and task.key not in preds:
            rows.append({**base, "kind": "task"})

    header = ["key", *columns.values(), "annotator", label_col, "created_at"]
    if with_kind:
        header[1:1] = ["kind"]
        header += ["model", "score"]
    if suffix == ".jsonl":
        data_columns = set(columns.values())
        lines = [
            json.dumps(
                {c: row.get(c) for c in header if c in row or c not in data_columns},
                ensure_ascii=False,
                default=str,
            )
            for row in rows
        ]
        _write_text(path, "".join(line + "\n" for line in lines))
        return path
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(row.get(c)) for c in header})
    _write_text(path, buffer.getvalue())
    return path


def read_table(path: Path, schema: LabelSchema) -> ProjectSnapshot:
    """A snapshot of a CSV or JSON Lines table of classification or number labels.

    Required columns: ``key`` and the label (the schema's name, else ``label``).
    Optional: ``annotator`` (default ``import``), ``created_at`` (ISO), ``kind``
    (``annotation``, ``prediction`` with ``model`` and optional ``score``, or ``task``
    for a task with no label); every other column is a data field of the task.
    """
    suffix = _table_suffix(path)
    if schema.kind not in ("classification", "number"):
        raise UsageError(
            f"a table holds classification or number labels, not {schema.kind}",
            hint="use Label Studio JSON, COCO or YOLO for spans and boxes",
        )
    source = path.name
    rows = _read_jsonl(path) if suffix == ".jsonl" else _read_csv(path)
    columns: dict[str, None] = {}
    for _, row in rows:
        columns.update(dict.fromkeys(row))
    label_col = schema.name if schema.name in columns else "label"
    reserved = _reserved(label_col)
    for required in ("key", label_col):
        if required not in columns and rows:
            raise InputDataError(
                f"{source}: no {required!r} column (columns: {', '.join(columns)})",
                hint=f"a label table needs the columns `key` and `{schema.name}`",
            )
    tasks: dict[str, TaskData] = {}
    first_line: dict[str, int] = {}
    annotations: list[AnnotationData] = []
    predictions: list[PredictionData] = []
    for line, row in rows:
        where = f"{source}, line {line}"
        key = row.get("key")
        if key is None or key == "":
            raise InputDataError(f"{where}: the key is empty", hint="give every row a key")
        key = str(key)
        data = {
            (c[5:] if c.startswith("data.") else c): v for c, v in row.items() if c not in reserved
        }
        if key not in tasks:
            tasks[key] = TaskData(key=key, data=data)
            first_line[key] = line
        elif tasks[key].data != data:
            raise InputDataError(
                f"{where}: task {key!r} has other data fields than on line {first_line[key]}",
                hint="rows of one key carry the same data",
            )
        kind = row.get("kind") or "annotation"
        if kind == "task":
            continue
        if kind not in ("annotation", "prediction"):
            raise InputDataError(
                f"{where}: kind {kind!r} is not annotation, prediction or task", hint=""
            )
        raw = row.get(label_col)
        if suffix == ".csv" and schema.kind == "classification" and schema.multi_label:
            raw = [x for x in str(raw or "").split("|") if x]
        value = schema.validate(raw, where)
        if kind == "prediction":
            model = row.get("model")
            if not model:
                raise InputDataError(f"{where}: a prediction needs a model", hint="fill `model`")
            predictions.append(
                PredictionData(
                    task_key=key,
                    model=str(model),
                    value=value,
                    score=_table_score(row.get("score"), where),
                )
            )
        else:
            annotations.append(
                AnnotationData(
                    task_key=key,
                    annotator=str(row.get("annotator") or "import"),
                    value=value,
                    created_at=_from_iso(row.get("created_at") or None, f"{where}: created_at"),
                )
            )
    return ProjectSnapshot(
        schema=schema,
        tasks=list(tasks.values()),
        annotations=annotations,
        predictions=predictions,
        meta={"format": suffix[1:], "source": source},
    )


def _reserved(label_col: str) -> set[str]:
    return {"key", "kind", "annotator", "created_at", "model", "score", label_col}


def _table_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise UsageError(f"{path.name}: a label table is .csv or .jsonl", hint="rename the file")
    return suffix


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(str(x) for x in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            if None in row:
                raise InputDataError(
                    f"{path.name}, line {reader.line_num}: more cells than columns",
                    hint="quote cells that contain commas",
                )
            rows.append((reader.line_num, dict(row)))
    except csv.Error as e:
        raise InputDataError(f"{path.name}, line {reader.line_num}: {e}", hint="") from e
    return rows


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputDataError(
                f"{path.name}, line {n}: not valid JSON: {e.msg}", hint="one JSON object a line"
            ) from None
        if not isinstance(row, dict):
            raise InputDataError(
                f"{path.name}, line {n}: expected an object, got {_type_name(row)}",
                hint="one JSON object a line",
            )
        rows.append((n, row))
    return rows


def _table_score(raw: Any, where: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise InputDataError(f"{where}: score {raw!r} is not a number", hint="") from None


__all__ = ["read_table", "write_table"]
