"""Read COCO data sources, check them before anything runs, and build the annotation index.

Everything that can be checked without decoding pixels is checked here, up front, and all
problems are reported at once (the first :data:`MAX_REPORTED`), each naming the file, image id or
annotation id: missing or empty annotation files, files without images, duplicate image or
annotation ids, annotations of unknown images or categories, non-positive or out-of-image boxes,
missing image files, missing H5 files or keys, and ``file_name`` values that are absolute or
climb out of the source's ``image_dir`` with ``..`` (an annotation file must not make the trainer
read an arbitrary file on the node or a shared volume). Corrupt pixels can only be found when an
image is decoded; :mod:`rtdetr_trainer.data.images` names the file then.

A box that overhangs the image border by at most :data:`BORDER_TOLERANCE_PX` (rounding in the
tool that wrote it) is clipped and counted in one warning line; anything further out is an error.

``json_file`` follows TAO: a path ending in ``.json`` is that file; a path without an extension
is a glob (``/data/annotations/train*`` or ``/data/shards/*``) of several files.
"""

from __future__ import annotations

import glob
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import h5py
from PIL import Image, UnidentifiedImageError

from rtdetr_spec.artifacts import ClassMap
from rtdetr_trainer.data.classmap import merge_categories
from rtdetr_trainer.data.h5 import H5_SCHEME, RGB_GROUP, frame_size, is_h5_uri, resolve_h5_uri
from rtdetr_trainer.data.index import DetectionIndex, IndexBuilder
from rtdetr_trainer.errors import DataError

log = logging.getLogger(__name__)

MAX_REPORTED = 20
BORDER_TOLERANCE_PX = 1.0


@dataclass
class CocoFile:
    """One parsed annotation file and the image folder its names are relative to."""

    path: Path
    image_dir: Path
    source: int
    data: dict[str, Any]

    @property
    def categories(self) -> dict[int, str]:
        return {int(c["id"]): str(c.get("name", c["id"])) for c in self.data["categories"]}


def resolve_json_files(json_file: str, key: str) -> list[Path]:
    """TAO's rule: ``*.json`` is one file, an extension-less path is a glob of files."""
    suffix = Path(json_file).suffix
    if suffix == ".json":
        path = Path(json_file)
        if not path.is_file():
            raise DataError(f"{key}: annotation file {json_file} does not exist")
        return [path]
    if suffix == "":
        files = sorted(Path(p) for p in glob.glob(json_file) if Path(p).is_file())  # noqa: PTH207
        if not files:
            raise DataError(f"{key}: no annotation files match {json_file!r}")
        return files
    raise DataError(
        f"{key}: {json_file!r} must end in .json, or be an extension-less glob such as "
        "/data/annotations/* (TAO's convention)"
    )


def read_coco(path: Path) -> dict[str, Any]:
    """Parse a COCO JSON and check its top-level structure."""
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); COCO files are JSON") from None
    if not text.strip():
        raise DataError(f"{path}: the annotation file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: top level must be a JSON object with images/annotations")
    for name in ("images", "annotations", "categories"):
        value = data.setdefault(name, [])
        if not isinstance(value, list):
            raise DataError(f"{path}: '{name}' must be a list")
    if not data["images"]:
        raise DataError(f"{path}: the annotation file lists no images")
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int):
            raise DataError(f"{path}: categories[{i}] needs an integer 'id'")
        if c["id"] < 0:
            raise DataError(f"{path}: categories[{i}] has id {c['id']}; category ids are >= 0")
    return data


def read_source(image_dir: str, json_file: str, source: int, key: str) -> list[CocoFile]:
    """All annotation files of one ``{image_dir, json_file}`` data source."""
    if not Path(image_dir).is_dir():
        raise DataError(f"{key}.image_dir: folder {image_dir} does not exist")
    return [
        CocoFile(path=p, image_dir=Path(image_dir), source=source, data=read_coco(p))
        for p in resolve_json_files(json_file, f"{key}.json_file")
    ]


def categories_of(files: list[CocoFile]) -> dict[int, str]:
    return merge_categories((str(f.path), f.data["categories"]) for f in files)


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(message)

    def raise_if_any(self) -> None:
        if self.total:
            raise DataError(self.items, total=self.total)


class _H5Catalog:
    """Which frame keys exist in which H5 file, opened once each while checking."""

    def __init__(self) -> None:
        self._keys: dict[Path, set[str] | str] = {}

    def check(self, path: Path, key: str) -> str | None:
        if path not in self._keys:
            try:
                with h5py.File(path, "r") as f:
                    group = f.get(RGB_GROUP)
                    self._keys[path] = (
                        set(group.keys()) if isinstance(group, h5py.Group) else "no 'rgb' group"
                    )
            except FileNotFoundError:
                self._keys[path] = "H5 file not found"
            except OSError as e:
                self._keys[path] = f"not a readable H5 file ({e})"
        keys = self._keys[path]
        if isinstance(keys, str):
            return f"{path}: {keys}"
        if key not in keys:
            return f"{path}: key {key!r} not found in its '{RGB_GROUP}' group"
        return None

    def size(self, path: Path, key: str) -> tuple[int, int]:
        with h5py.File(path, "r") as f:
            return frame_size(f[RGB_GROUP][key], f"{path}:{key}")


def build_index(
    files: list[CocoFile],
    class_map: ClassMap,
    *,
    check_files: bool = True,
) -> DetectionIndex:
    """Validate every file and turn them into one :class:`DetectionIndex`.

    Raises:
        DataError: listing every problem found (up to :data:`MAX_REPORTED` of them).
    """
    problems = _Problems()
    index_of = class_map.index_of_category()
    h5 = _H5Catalog()
    builder = IndexBuilder()
    clipped = 0
    for cf in files:
        images, anns_by_image = _check_file(cf, index_of, problems)
        for img in images:
            image_id = int(img["id"])
            file_name = str(img["file_name"])
            where = f"{cf.path}: image id {image_id} ({file_name})"
            if is_h5_uri(file_name):
                try:
                    h5_path, key = resolve_h5_uri(file_name, cf.image_dir)
                except DataError as e:
                    problems.add(f"{where}: {e}")
                    continue
                missing = h5.check(h5_path, key) if check_files else None
                path = str(h5_path)
            else:
                p = Path(file_name)
                key, path = "", str(p if p.is_absolute() else cf.image_dir / p)
                missing = None
                if check_files and not Path(path).is_file():
                    missing = f"image file {path} not found"
            if missing:
                problems.add(f"{where}: {missing}")
                continue
            size = _image_size(img, path, key, h5, where, problems)
            if size is None:
                continue
            width, height = size
            builder.add_image(image_id, width, height, cf.source, path, key)
            for ann in anns_by_image.get(image_id, []):
                box = _checked_box(ann, width, height, cf.path, problems)
                if box is None:
                    continue
                x1, y1, x2, y2, was_clipped = box
                clipped += was_clipped
                cid = int(ann["category_id"])
                builder.add_annotation(
                    (x1, y1, x2, y2),
                    index_of[cid],
                    cid,
                    int(ann["id"]),
                    int(bool(ann.get("iscrowd", 0))),
                    float(ann.get("area", (x2 - x1) * (y2 - y1))),
                )
    problems.raise_if_any()
    if clipped:
        log.warning(
            "clipped %d box(es) that overhung the image border by at most %.1f px",
            clipped,
            BORDER_TOLERANCE_PX,
        )
    return builder.build()


def _check_file(
    cf: CocoFile, index_of: dict[int, int], problems: _Problems
) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """Structural checks of one file; returns its usable images and annotations by image id."""
    images: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, img in enumerate(cf.data["images"]):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int):
            problems.add(f"{cf.path}: images[{i}] needs an integer 'id'")
            continue
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            problems.add(f"{cf.path}: image id {img['id']} has no 'file_name'")
            continue
        if img["id"] in seen:
            problems.add(f"{cf.path}: duplicate image id {img['id']} ({img['file_name']})")
            continue
        seen.add(img["id"])
        escape = outside_image_dir(img["file_name"])
        if escape:
            problems.add(
                f"{cf.path}: image id {img['id']}: file_name {img['file_name']!r} {escape}; "
                "file names must be relative to the source's image_dir"
            )
            continue
        images.append(img)
    categories = cf.categories
    by_image: dict[int, list[dict[str, Any]]] = {}
    ann_ids: set[int] = set()
    for i, ann in enumerate(cf.data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
            problems.add(f"{cf.path}: annotations[{i}] needs an integer 'id'")
            continue
        aid = ann["id"]
        if aid in ann_ids:
            problems.add(f"{cf.path}: duplicate annotation id {aid}")
            continue
        ann_ids.add(aid)
        if not isinstance(ann.get("image_id"), int) or ann["image_id"] not in seen:
            problems.add(
                f"{cf.path}: annotation id {aid} refers to unknown image id {ann.get('image_id')!r}"
            )
            continue
        cid = ann.get("category_id")
        if not isinstance(cid, int) or cid not in categories:
            problems.add(
                f"{cf.path}: annotation id {aid} has unknown category id {cid!r} "
                f"(categories: {sorted(categories)})"
            )
            continue
        if cid not in index_of:
            problems.add(
                f"{cf.path}: annotation id {aid} has category id {cid}, which the "
                "model's class map does not know"
            )
            continue
        area = ann.get("area", 0)
        if not isinstance(area, int | float) or not math.isfinite(area) or area < 0:
            problems.add(
                f"{cf.path}: annotation id {aid}: area must be a number >= 0, got {area!r}"
            )
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)
    return images, by_image


def outside_image_dir(file_name: str) -> str | None:
    """Why ``file_name`` (or an ``h5://`` name's file part) leaves ``image_dir``, or None."""
    part = file_name[len(H5_SCHEME) :].partition(":")[0] if is_h5_uri(file_name) else file_name
    path = PurePosixPath(part.replace("\\", "/"))
    if path.is_absolute() or part.startswith("\\"):
        return "is an absolute path"
    if ".." in path.parts:
        return "climbs out of image_dir with '..'"
    return None


def _image_size(
    img: dict[str, Any], path: str, key: str, h5: _H5Catalog, where: str, problems: _Problems
) -> tuple[int, int] | None:
    w, h = img.get("width"), img.get("height")
    if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
        return w, h
    if w is not None or h is not None:
        problems.add(f"{where}: width/height must be positive integers, got {w!r}x{h!r}")
        return None
    try:  # absent in the JSON: read the header only
        if key:
            return h5.size(Path(path), key)
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, DataError, KeyError) as e:
        problems.add(f"{where}: cannot read the image size ({e})")
        return None


def _checked_box(
    ann: dict[str, Any], width: int, height: int, path: Path, problems: _Problems
) -> tuple[float, float, float, float, int] | None:
    aid = ann["id"]
    where = f"{path}: annotation id {aid} (image id {ann['image_id']})"
    bbox = ann.get("bbox")
    if (
        not isinstance(bbox, list | tuple)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
    ):
        problems.add(f"{where}: bbox must be [x, y, width, height] numbers, got {bbox!r}")
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        problems.add(f"{where}: box {bbox} has non-positive size {w:g}x{h:g}")
        return None
    x2, y2 = x + w, y + h
    tol = BORDER_TOLERANCE_PX
    if x < -tol or y < -tol or x2 > width + tol or y2 > height + tol:
        problems.add(
            f"{where}: box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] lies outside the "
            f"{width}x{height} image"
        )
        return None
    cx1, cy1 = max(x, 0.0), max(y, 0.0)
    cx2, cy2 = min(x2, float(width)), min(y2, float(height))
    if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
        problems.add(f"{where}: box {bbox} has no area inside the {width}x{height} image")
        return None
    was_clipped = int((cx1, cy1, cx2, cy2) != (x, y, x2, y2))
    return cx1, cy1, cx2, cy2, was_clipped
