"""Reading KITTI label folders and class maps for ``rtdetr dataset convert kitti``.

A KITTI label file holds one object per line, 15 fields (16 with a score)::

    class truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

Only the class and the 2D box (fields 1 and 5-8, pixels, corners) matter for a 2D detector; the
first 8 fields must be present. ``DontCare`` marks regions nobody labelled: it is a KITTI
convention, not a class.

Everything here collects problems rather than stopping at the first, so one run reports every
broken line of a folder at once (each as ``file:line``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rtdetr_trainer.data.mapping_arg import read_mapping_arg
from rtdetr_trainer.errors import DataError

DONT_CARE = "dontcare"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MIN_FIELDS = 8


@dataclass(frozen=True)
class KittiObject:
    """One labelled object: its class as written and its box corners (x1, y1, x2, y2) in px."""

    cls: str
    box: tuple[float, float, float, float]
    line: int


def read_label_file(path: Path, problems: list[str]) -> list[KittiObject]:
    """Parse one label file; malformed lines are added to ``problems`` as ``file:line: why``."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path}: cannot read the label file ({type(e).__name__}: {e})")
        return []
    objects: list[KittiObject] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{n}"
        if len(parts) < MIN_FIELDS:
            problems.append(
                f"{where}: a KITTI line needs at least {MIN_FIELDS} fields "
                f"(class trunc occ alpha x1 y1 x2 y2 ...), got {len(parts)}"
            )
            continue
        try:
            x1, y1, x2, y2 = (float(v) for v in parts[4:8])
        except ValueError:
            problems.append(f"{where}: x1 y1 x2 y2 (fields 5-8) must be numbers: {parts[4:8]}")
            continue
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            problems.append(f"{where}: box {parts[4:8]} is not finite")
            continue
        if parts[0].lower() != DONT_CARE and (x2 < x1 or y2 < y1):
            problems.append(f"{where}: box corners are inverted (x1 {x1} > x2 {x2} or y1 > y2)")
            continue
        objects.append(KittiObject(parts[0], (x1, y1, x2, y2), n))
    return objects


def pair_files(
    image_dir: Path, label_dir: Path, problems: list[str]
) -> tuple[dict[str, Path], dict[str, Path]]:
    """Images and label files by stem. Two images sharing a stem are a problem (which label?)."""
    if not image_dir.is_dir():
        raise DataError(f"--images: folder {image_dir} does not exist")
    if not label_dir.is_dir():
        raise DataError(f"--labels: folder {label_dir} does not exist")
    images: dict[str, Path] = {}
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        if p.stem in images:
            problems.append(
                f"{image_dir}: images {images[p.stem].name} and {p.name} share the stem "
                f"{p.stem!r}, so {p.stem}.txt could label either"
            )
            continue
        images[p.stem] = p
    if not images:
        raise DataError(f"--images: no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    labels = {p.stem: p for p in sorted(label_dir.glob("*.txt")) if p.is_file()}
    return images, labels


@dataclass(frozen=True)
class ClassMapping:
    """KITTI class (lower case) -> target class name; ``None`` drops the class on purpose.

    ``order`` lists the target names in the order the map gives them, which fixes the COCO
    category ids (1, 2, ...), so every conversion with one map yields the same ids.
    """

    targets: dict[str, str | None]
    order: tuple[str, ...]

    def target(self, cls: str) -> tuple[bool, str | None]:
        """(known, target) for a class as written in a label file."""
        key = cls.lower()
        if key not in self.targets:
            return False, None
        return True, self.targets[key]


def parse_class_map(value: str) -> ClassMapping:
    """``--class-map``: a JSON/YAML file ``{kitti: target}`` or inline ``kitti=target,...``.

    An empty target (``DontCare=`` inline, ``""`` or ``null`` in a file) drops that class
    explicitly. Keys are matched case-insensitively, as KITTI folders mix ``Car``/``car``.
    """
    where = f"--class-map {value}"
    pairs = read_mapping_arg(value, key="kitti_class")
    targets: dict[str, str | None] = {}
    order: list[str] = []
    for key, name in pairs:
        lower = key.strip().lower()
        if lower in targets and targets[lower] != name:
            raise DataError(
                f"{where}: {key!r} is mapped twice ({targets[lower]!r} and {name!r}); "
                "class names are matched case-insensitively"
            )
        targets[lower] = name or None
        if name and name not in order:
            order.append(name)
    return ClassMapping(targets, tuple(order))
