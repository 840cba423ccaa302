"""Image augmentation for file datasets: flips, rotations, crops and colour jitter, seeded.

Images are recognised by suffix; other files pass through unchanged. Each image gets
``copies`` augmented variants named ``STEM.augN.EXT`` next to it.
"""

from __future__ import annotations

import io
import random
from typing import Any

from modelcycle.core.errors import InputDataError, RecipeError
from modelcycle.data.yamlio import suggest

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
OPS = ("flip", "vflip", "rotate", "crop", "color_jitter")


def check_ops(ops: Any, where: str) -> None:
    if not isinstance(ops, list) or not ops:
        raise RecipeError(
            f"{where}: ops must be a non-empty list", hint=f"choose from: {', '.join(OPS)}"
        )
    for op in ops:
        name = op if isinstance(op, str) else next(iter(op), "") if isinstance(op, dict) else ""
        if name not in OPS:
            raise RecipeError(
                f"{where}: unknown augmentation {name!r}{suggest(str(name), OPS)}",
                hint=f"choose from: {', '.join(OPS)}",
            )


def is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def augment_image(data: bytes, path: str, ops: list[Any], rng: random.Random) -> bytes:
    """One augmented variant of the image in ``data``, encoded like the original."""
    from PIL import Image, ImageEnhance, UnidentifiedImageError

    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()
    except (UnidentifiedImageError, OSError) as e:
        raise InputDataError(
            f"{path} is not a readable image: {e}",
            hint="remove it from the dataset or fix the file",
        ) from e
    fmt = opened.format or "PNG"
    img: Image.Image = opened
    for op in ops:
        name, params = (op, {}) if isinstance(op, str) else next(iter(op.items()))
        params = params or {}
        if name == "flip" and rng.random() < float(params.get("p", 0.5)):
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        elif name == "vflip" and rng.random() < float(params.get("p", 0.5)):
            img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        elif name == "rotate":
            limit = float(params.get("degrees", 15))
            img = img.rotate(rng.uniform(-limit, limit), resample=Image.Resampling.BILINEAR)
        elif name == "crop":
            scale = float(params.get("scale", 0.9))
            w, h = img.size
            cw, ch = max(1, int(w * scale)), max(1, int(h * scale))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            img = img.crop((x, y, x + cw, y + ch)).resize((w, h))
        elif name == "color_jitter":
            amount = float(params.get("amount", 0.2))
            if img.mode not in ("RGB", "RGBA", "L"):
                img = img.convert("RGB")
            for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast):
                img = enhancer(img).enhance(rng.uniform(1 - amount, 1 + amount))
    out = io.BytesIO()
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    img.save(out, format=fmt)
    return out.getvalue()
