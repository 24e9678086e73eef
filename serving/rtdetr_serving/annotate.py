"""Boxes drawn on images: ``rtdetr inference``'s annotated images and ``rtdetr-serve infer
--annotate``'s, one look for both (the TAO convention: a coloured outline per class and a
``"{class}: {score:.2f}"`` caption above the box).

Torch-free so the serving client can use it; the trainer's inference task calls it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFont

#: Colours given to classes in order when no colour map is set (TAO's spec example's colours
#: first, for the seven warehouse classes).
PALETTE = (
    "green",
    "red",
    "blue",
    "yellow",
    "purple",
    "orange",
    "pink",
    "cyan",
    "magenta",
    "lime",
    "brown",
    "white",
)

Box = tuple[float, float, float, float]


def palette_colors(names: Sequence[str | None]) -> dict[str, tuple[int, int, int]]:
    """Class name -> RGB from :data:`PALETTE`, in the order the classes are given."""
    known = [n for n in names if n]
    return {n: ImageColor.getrgb(PALETTE[i % len(PALETTE)])[:3] for i, n in enumerate(known)}


def draw_boxes(
    image: Image.Image,
    boxes: Iterable[tuple[str, float, Box]],
    colors: Mapping[str, tuple[int, int, int]],
    *,
    width: int = 2,
) -> Image.Image:
    """A copy of ``image`` with each (class, score, x1 y1 x2 y2 in pixels) box drawn.

    Classes without a colour are not drawn (TAO's colour-map rule).
    """
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    d = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for name, score, box in boxes:
        color = colors.get(name)
        if color is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        d.rectangle([x1, y1, x2, y2], outline=color, width=width)
        d.text((x1 + 1, max(0.0, y1 - 12)), f"{name}: {score:.2f}", fill=color, font=font)
    return out


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write ``path`` through a temporary file, so a reader never sees half an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        image.save(tmp, format=image.format or _format(path))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed save leaves neither half an image nor a temp
        raise


def _format(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP"}.get(ext, "PNG")


def annotate_results(results: list[Any], folder: Path, classes: list[str]) -> int:
    """Each result's source image with its detections drawn, as ``folder/<file name>``.

    Two inputs with the same file name would overwrite each other: refused, naming both.
    """
    from rtdetr_serving.preprocess import load_rgb

    names: dict[str, str] = {}
    for r in results:
        name = Path(r.source).name
        if name in names:
            raise ValueError(f"--annotate: {names[name]} and {r.source} share the file name {name}")
        names[name] = r.source
    colors = palette_colors(classes)
    for r in results:
        boxes = [(d.label, d.score, d.box) for d in r.detections]
        image = draw_boxes(load_rgb(r.source), boxes, colors)
        save_atomic(image, folder / Path(r.source).name)
    return len(results)
