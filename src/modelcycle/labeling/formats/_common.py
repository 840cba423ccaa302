"""What the format modules share: checks whose errors name the file, the task and the
field; the checks writers make on a snapshot (labels of known tasks, the schema's kind,
one annotation per task, task keys that are file names); image sizes and copies; atomic
text writes; reading text and JSON; ISO dates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from modelcycle.core.errors import InputDataError, NotFoundError, UsageError
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    ProjectSnapshot,
    TaskData,
)

ImageSource = Callable[[TaskData], Path]  # where a task's image file is


def _need(obj: dict[str, Any], key: str, where: str, name: str | None = None, *, hint: str) -> Any:
    if key not in obj:
        raise InputDataError(f"{where}: field {name or key!r} missing", hint=hint)
    return obj[key]


def _need_list(
    obj: dict[str, Any],
    key: str,
    where: str,
    default: list[Any] | None = None,
    *,
    hint: str,
) -> list[Any]:
    if key not in obj and default is not None:
        return default
    value = _need(obj, key, where, hint=hint)
    if not isinstance(value, list):
        raise InputDataError(
            f"{where}: field {key!r} must be a list, got {_type_name(value)}", hint=hint
        )
    return value


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InputDataError(f"{where} must be a whole number of pixels, got {value!r}", hint="")
    if value <= 0:
        raise InputDataError(f"{where} must be positive, got {value!r}", hint="")
    return int(value)


_TYPE_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _known(key: str, keys: set[str]) -> str:
    if key not in keys:
        raise UsageError(
            f"the snapshot labels task {key!r}, which is not among its tasks",
            hint="add the task to the snapshot",
        )
    return key


def _require_kind(schema: LabelSchema, kind: str, fmt: str) -> LabelSchema:
    if schema.kind != kind:
        raise UsageError(
            f"{fmt} holds {kind}, but the schema's kind is {schema.kind}",
            hint="use Label Studio JSON or a CSV/JSON Lines table for other kinds",
        )
    return schema


def _one_annotation_per_task(snap: ProjectSnapshot, fmt: str) -> dict[str, AnnotationData]:
    keys = {t.key for t in snap.tasks}
    out: dict[str, AnnotationData] = {}
    for ann in snap.annotations:
        if _known(ann.task_key, keys) in out:
            raise UsageError(
                f"{fmt} holds one set of boxes per image, but task {ann.task_key!r} has "
                f"annotations by {out[ann.task_key].annotator!r} and {ann.annotator!r}",
                hint="export a consensus, or one annotator's labels",
            )
        out[ann.task_key] = ann
    return out


def _relative_name(key: str) -> str:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise UsageError(
            f"task key {key!r} cannot be a file name inside the export",
            hint="file tasks are keyed by their relative path",
        )
    return path.as_posix()


def _meta_size(task: TaskData) -> tuple[int, int] | None:
    width, height = task.meta.get("width"), task.meta.get("height")
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    return None


def _task_size(task: TaskData, image: Path | None) -> tuple[int, int]:
    size = _meta_size(task)
    if size is not None:
        return size
    if image is not None:
        return _image_file_size(image)
    raise UsageError(
        f"task {task.key!r} has no width/height in its meta",
        hint="record the image size, or pass image_source so the image can be measured",
    )


def _image_file_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist", hint="check the images folder") from None
    except (OSError, UnidentifiedImageError) as e:
        raise InputDataError(f"{path.name}: cannot be read as an image: {e}", hint="") from e


def _copy_image(src: Path, dest: Path, task: TaskData) -> None:
    if not src.is_file():
        raise NotFoundError(
            f"the image of task {task.key!r} is not at {src}", hint="check image_source"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputDataError(f"{path.name}: cannot be read as UTF-8 text: {e}", hint="") from e


def _load_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputDataError(
            f"{path.name} is not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
            hint="export the file again; it may be truncated",
        ) from None


def _from_iso(raw: Any, where: str) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        return dt.datetime.fromisoformat(str(raw))
    except ValueError:
        raise InputDataError(
            f"{where} is not an ISO date: {raw!r}", hint="e.g. 2024-01-15T10:23:45.123456Z"
        ) from None


def _iso(when: dt.datetime) -> str:
    text = when.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


__all__ = ["ImageSource"]
