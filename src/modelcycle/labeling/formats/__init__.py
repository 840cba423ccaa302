"""Import and export formats for labeling projects: pure converters between files and
:class:`ProjectSnapshot` (no database, no blob store).

=================  ==========================================  =========================
format             read                                        write
=================  ==========================================  =========================
Label Studio JSON  :func:`from_label_studio` (a parsed list),  :func:`to_label_studio`
                   :func:`read_label_studio` (a file)
COCO detection     :func:`read_coco`                           :func:`write_coco`
YOLO (Ultralytics) :func:`read_yolo`                           :func:`write_yolo`
CSV / JSON Lines   :func:`read_table`                          :func:`write_table`
=================  ==========================================  =========================

Readers parse and validate the whole file before they return, so a caller can write
the snapshot in one transaction: a bad file imports nothing. Every value goes through
:meth:`LabelSchema.validate`; a file that does not fit raises :class:`InputDataError`
naming the file, the task and the field.

One module a format (``label_studio``, ``coco``, ``yolo``, ``tables``), whose docstring
says what the format keeps and what it leaves out; import the names from this package.
"""

from modelcycle.labeling.formats._common import ImageSource
from modelcycle.labeling.formats.coco import read_coco, write_coco
from modelcycle.labeling.formats.label_studio import (
    LS_TYPES,
    ImageSizes,
    from_label_studio,
    read_label_studio,
    to_label_studio,
    write_label_studio,
)
from modelcycle.labeling.formats.tables import read_table, write_table
from modelcycle.labeling.formats.yolo import IMAGE_SUFFIXES, read_yolo, write_yolo

__all__ = [
    "IMAGE_SUFFIXES",
    "LS_TYPES",
    "ImageSizes",
    "ImageSource",
    "from_label_studio",
    "read_coco",
    "read_label_studio",
    "read_table",
    "read_yolo",
    "to_label_studio",
    "write_coco",
    "write_label_studio",
    "write_table",
    "write_yolo",
]
