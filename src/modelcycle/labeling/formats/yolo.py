"""YOLO (the Ultralytics detection layout): :func:`read_yolo` and :func:`write_yolo`.

One set of boxes per image: the snapshot given to :func:`write_yolo` holds at most one
annotation per task (a consensus, or one annotator's), and only tasks that have one are
written; an image whose label file is empty (or, on reading, missing) is a negative.
:func:`read_yolo` gives every image an annotation (empty for a negative) by
``yolo-import``. Images are copied, never hard-linked: an exported file edited in place
must not change a stored blob.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from modelcycle.core.errors import InputDataError, NotFoundError, UsageError
from modelcycle.labeling.formats._common import (
    ImageSource,
    _copy_image,
    _image_file_size,
    _one_annotation_per_task,
    _relative_name,
    _require_kind,
    _task_size,
    _write_text,
)
from modelcycle.labeling.schema import (
    AnnotationData,
    LabelSchema,
    ProjectSnapshot,
    TaskData,
)

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".gif")


def write_yolo(
    snap: ProjectSnapshot, out_dir: Path, image_source: ImageSource | None = None
) -> Path:
    """Write an Ultralytics detection layout into ``out_dir``; returns its ``data.yaml``.

    ``images/<key>`` (when ``image_source`` is given), ``labels/<key stem>.txt`` with
    ``class cx cy w h`` normalized to [0, 1], and ``data.yaml`` (``path`` is the folder's
    absolute path: Ultralytics resolves relative paths against its own datasets folder).
    The snapshot holds at most one annotation per task; tasks without one are left out.
    Boxes are clipped to the image.
    """
    schema = _require_kind(snap.schema, "boxes", "YOLO")
    values = _one_annotation_per_task(snap, "YOLO")
    index = {name: i for i, name in enumerate(schema.labels)}
    written: dict[str, str] = {}
    for task in snap.tasks:
        ann = values.get(task.key)
        if ann is None:
            continue
        name = _relative_name(task.key)
        label_name = str(PurePosixPath(name).with_suffix(".txt"))
        if label_name in written:
            raise UsageError(
                f"tasks {written[label_name]!r} and {task.key!r} would share labels/{label_name}",
                hint="YOLO pairs an image and its labels by name without suffix; rename one",
            )
        written[label_name] = task.key
        src = image_source(task) if image_source is not None else None
        width, height = _task_size(task, src)
        lines = []
        for box in schema.validate(ann.value, f"task {task.key!r}", image_size=(width, height)):
            x0, y0 = max(box["x"], 0.0), max(box["y"], 0.0)
            x1, y1 = min(box["x"] + box["w"], width), min(box["y"] + box["h"], height)
            cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
            w, h = (x1 - x0) / width, (y1 - y0) / height
            lines.append(f"{index[box['label']]} {cx:.10g} {cy:.10g} {w:.10g} {h:.10g}\n")
        _write_text(out_dir / "labels" / label_name, "".join(lines))
        if src is not None:
            _copy_image(src, out_dir / "images" / name, task)
    config = {
        "path": str(out_dir.resolve()),
        "train": "images",
        "val": "images",
        "names": dict(enumerate(schema.labels)),
    }
    path = out_dir / "data.yaml"
    _write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def read_yolo(
    folder: Path,
    schema: LabelSchema | None = None,
    image_sizes: Callable[[str], tuple[int, int]] | None = None,
) -> ProjectSnapshot:
    """A snapshot of an Ultralytics detection folder (``data.yaml``, ``images/``, ``labels/``).

    Tasks are the images under ``images/`` (key: the path below it); an image without a
    label file is a negative (an empty annotation), as Ultralytics treats it. Image
    sizes come from ``image_sizes(key)`` when given, else from the image's header.
    Without images, a label file's task key is its path below ``labels/`` without
    ``.txt``, and ``image_sizes`` is required.
    """
    if folder.is_file():
        folder = folder.parent
    names = _yolo_names(folder / "data.yaml")
    if schema is None:
        schema = LabelSchema(kind="boxes", labels=tuple(names.values()))
    _require_kind(schema, "boxes", "YOLO")

    images_dir, labels_dir = folder / "images", folder / "labels"
    images: dict[str, str] = {}  # stem path -> key
    for p in sorted(images_dir.rglob("*")) if images_dir.is_dir() else []:
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            key = p.relative_to(images_dir).as_posix()
            stem = str(PurePosixPath(key).with_suffix(""))
            if stem in images:
                raise InputDataError(
                    f"images/{images[stem]} and images/{key} share the label file "
                    f"labels/{stem}.txt",
                    hint="give each image a distinct name without suffix",
                )
            images[stem] = key
    labels: dict[str, Path] = {}
    for p in sorted(labels_dir.rglob("*.txt")) if labels_dir.is_dir() else []:
        stem = str(PurePosixPath(p.relative_to(labels_dir).as_posix()).with_suffix(""))
        labels[stem] = p
        if stem not in images:
            if image_sizes is None:
                raise InputDataError(
                    f"labels/{stem}.txt has no image images/{stem}.* to read its size from",
                    hint="put the images under images/, or pass image_sizes",
                )
            images[stem] = stem
    if not images:
        raise InputDataError(
            f"{folder}: no images under images/ and no label files under labels/",
            hint="the Ultralytics layout is data.yaml, images/<name>, labels/<stem>.txt",
        )

    tasks, annotations = [], []
    for stem, key in sorted(images.items(), key=lambda kv: kv[1]):
        size = image_sizes(key) if image_sizes else _image_file_size(images_dir / key)
        tasks.append(
            TaskData(key=key, data={"image": key}, meta={"width": size[0], "height": size[1]})
        )
        boxes = (
            _yolo_boxes(labels[stem], f"labels/{stem}.txt", names, schema, size)
            if stem in labels
            else []
        )
        annotations.append(AnnotationData(task_key=key, annotator="yolo-import", value=boxes))
    return ProjectSnapshot(
        schema=schema,
        tasks=tasks,
        annotations=annotations,
        meta={"format": "yolo", "source": str(folder)},
    )


def _yolo_names(path: Path) -> dict[int, str]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"{path} does not exist", hint="a YOLO folder has a data.yaml listing `names`"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputDataError(f"{path.name}: cannot be read as YAML: {e}", hint="") from e
    raw = config.get("names") if isinstance(config, dict) else None
    if isinstance(raw, list):
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict) or not raw:
        raise InputDataError(
            f"{path.name}: field 'names' missing or empty",
            hint="names: {0: cat, 1: dog} (or a list)",
        )
    names: dict[int, str] = {}
    for k, v in sorted(raw.items(), key=lambda kv: str(kv[0])):
        if isinstance(k, bool) or not isinstance(k, int) or k < 0 or not isinstance(v, str | int):
            raise InputDataError(
                f"{path.name}: names entry {k!r}: {v!r} is not a class index and a name",
                hint="names: {0: cat, 1: dog}",
            )
        names[k] = str(v)
    if len(set(names.values())) != len(names):
        raise InputDataError(f"{path.name}: a name is listed twice", hint="list each name once")
    return dict(sorted(names.items()))


def _yolo_boxes(
    path: Path,
    shown: str,
    names: dict[int, str],
    schema: LabelSchema,
    size: tuple[int, int],
) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputDataError(f"{shown}: cannot be read: {e}", hint="") from e
    width, height = size
    boxes: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        where = f"{shown}, line {n}"
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise InputDataError(
                f"{where}: expected 5 fields (class cx cy w h), got {len(fields)}",
                hint="only detection boxes are read; segmentation and pose lines are not",
            )
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(f) for f in fields[1:])
        except ValueError:
            raise InputDataError(
                f"{where}: {line.strip()!r} is not a class index and four numbers", hint=""
            ) from None
        if cls not in names:
            raise InputDataError(
                f"{where}: class {cls} is not in data.yaml's names (0-{max(names)})",
                hint="fix the class index or add the name to data.yaml",
            )
        for label, v in zip(("cx", "cy", "w", "h"), (cx, cy, w, h), strict=True):
            if not 0.0 <= v <= 1.0:
                raise InputDataError(
                    f"{where}: {label} {v:g} is outside [0, 1]",
                    hint="YOLO coordinates are fractions of the image's width and height",
                )
        box = {
            "label": names[cls],
            "x": (cx - w / 2) * width,
            "y": (cy - h / 2) * height,
            "w": w * width,
            "h": h * height,
        }
        boxes.extend(schema.validate([box], where, image_size=size))
    return boxes


__all__ = ["IMAGE_SUFFIXES", "read_yolo", "write_yolo"]
