"""``rtdetr dataset convert kitti``: KITTI image/label folders -> COCO JSON (TAO's ``convert``).

TAO's converter quietly turns a missing label file into an image without objects and drops
classes its mapping lacks; both usually mean a wrong path or map, and both shrink the dataset
without a word. Here nothing shrinks silently:

errors (nothing is written; every instance is listed, each naming its file or ``file:line``):
  * an image without a label file, or a label file without an image (a wrong ``--labels`` or
    ``--images`` folder, or mismatched names); ``--allow-unmatched`` turns both into warnings,
    keeping such images as background images and ignoring such label files;
  * a class the ``--class-map`` does not mention (named, with its object count); drop a class
    on purpose with an empty target (``Misc=``);
  * a malformed line (too few fields, non-numeric or inverted box) and unreadable files;
  * a requested val split or shard count that leaves a split or a shard empty.
  * shard files of an earlier run with another ``--num-shards`` beside the new ones (a
    ``...-shard-*`` glob would read both).
warnings (expected cleanup, counted):
  * ``DontCare`` regions (KITTI's unlabelled areas; a detector has no ignore regions) unless the
    map names a target for them, and classes dropped by the map;
  * boxes clipped to the image, and boxes with no area left after clipping (dropped).

Outputs: ``--output FILE.json`` writes exactly that file. With ``--val-split`` the stem gets
``-train``/``-val`` (``kitti.json`` -> ``kitti-train.json``, ``kitti-val.json``); with
``--num-shards N`` it gets ``-shard-00000-of-0000N`` (after ``-train``/``-val``); TAO's glob
``json_file`` (``.../kitti-train-shard-*``) reads the shards. An ``--output`` that is a folder (or
has no ``.json`` suffix) keeps the earlier layout: ``train.json``/``val.json`` and
``train-shard-00000-of-00004.json`` in it.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_trainer.data.kitti_labels import (
    DONT_CARE,
    ClassMapping,
    KittiObject,
    pair_files,
    parse_class_map,
    read_label_file,
)
from rtdetr_trainer.errors import DataError

log = logging.getLogger(__name__)

MAX_LISTED = 20


@dataclass
class KittiSummary:
    """What a conversion kept, dropped and wrote; printed at the end and returned for checks."""

    images: int = 0
    annotations: int = 0
    categories: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    #: images converted without a label file (only with ``allow_unmatched``).
    images_without_labels: int = 0
    #: label files with no image, ignored (only with ``allow_unmatched``).
    labels_without_images: int = 0
    #: images with no object left (empty label file or everything dropped).
    empty_images: int = 0
    dont_care: int = 0
    #: class as written -> objects dropped by an empty target in the class map.
    dropped_by_map: dict[str, int] = field(default_factory=dict)
    clipped: int = 0
    degenerate: int = 0

    def warnings(self) -> list[str]:
        out = []
        if self.images_without_labels:
            out.append(f"{self.images_without_labels} image(s) have no label file; kept empty")
        if self.labels_without_images:
            out.append(f"{self.labels_without_images} label file(s) have no image; ignored")
        if self.dont_care:
            out.append(f"dropped {self.dont_care} DontCare region(s) (KITTI's unlabelled areas)")
        for cls, n in sorted(self.dropped_by_map.items()):
            out.append(f"dropped {n} {cls!r} object(s), as the class map says")
        if self.clipped:
            out.append(f"clipped {self.clipped} box(es) to the image border")
        if self.degenerate:
            out.append(f"dropped {self.degenerate} box(es) with no area inside the image")
        return out

    def report(self) -> str:
        """The end-of-run summary: every count, warned about or not."""
        by_map = sum(self.dropped_by_map.values())
        lines = [
            f"kitti: {self.images} image(s) ({self.empty_images} without boxes), "
            f"{self.annotations} box(es), {len(self.categories)} class(es): "
            f"{', '.join(self.categories)}",
            f"  dropped: {self.dont_care} DontCare, {by_map} by the class map, "
            f"{self.degenerate} with no area in the image; clipped: {self.clipped}",
            f"  unmatched: {self.images_without_labels} image(s) without labels, "
            f"{self.labels_without_images} label file(s) without images",
        ]
        lines += [f"  wrote {p}" for p in self.files]
        return "\n".join(lines)


@dataclass
class _Record:
    image: Path
    width: int
    height: int
    objects: list[tuple[str, tuple[float, float, float, float]]]


def _listed(problems: list[str]) -> DataError:
    return DataError(problems[:MAX_LISTED], total=len(problems))


def output_names(output: Path, split_names: list[str], num_shards: int) -> dict[str, list[Path]]:
    """The files each split is written to (see the module docstring for the naming)."""
    as_file = output.suffix == ".json" and not output.is_dir()
    if not as_file and output.exists() and not output.is_dir():
        raise DataError(f"--output {output}: not a folder, and not a .json file name")
    names: dict[str, list[Path]] = {}
    for split in split_names:
        if as_file:
            stem = output.stem if split_names == ["train"] else f"{output.stem}-{split}"
            folder = output.parent
        else:
            stem, folder = split, output
        if num_shards == 1:
            names[split] = [folder / f"{stem}.json"]
        else:
            names[split] = [
                folder / f"{stem}-shard-{s:05d}-of-{num_shards:05d}.json" for s in range(num_shards)
            ]
    return names


def _refuse_stale_shards(paths: dict[str, list[Path]]) -> None:
    """Shards of an earlier run with another ``--num-shards`` would join a ``...-shard-*`` glob."""
    stale: list[str] = []
    for files in paths.values():
        first = files[0]
        if "-shard-" not in first.name:
            continue
        stem = first.name.split("-shard-")[0]
        planned = set(files)
        stale += [
            str(p) for p in sorted(first.parent.glob(f"{stem}-shard-*.json")) if p not in planned
        ]
    if stale:
        raise DataError(
            f"shard files of an earlier conversion would be read with the new ones by a "
            f"'...-shard-*' json_file: {', '.join(stale[:5])}{', ...' if len(stale) > 5 else ''}; "
            "remove them or choose another --output"
        )


def _classify(
    obj: KittiObject,
    mapping: ClassMapping | None,
    summary: KittiSummary,
    unknown: Counter[str],
) -> str | None:
    """The object's target class, or None when it is dropped (counted in ``summary``)."""
    is_dont_care = obj.cls.lower() == DONT_CARE
    known, target = mapping.target(obj.cls) if mapping else (True, obj.cls)
    if is_dont_care and (mapping is None or not target):
        summary.dont_care += 1
        return None
    if not known:
        unknown[obj.cls] += 1
        return None
    if target is None:
        summary.dropped_by_map[obj.cls] = summary.dropped_by_map.get(obj.cls, 0) + 1
    return target


def _clip(
    box: tuple[float, float, float, float], w: int, h: int, summary: KittiSummary
) -> tuple[float, float, float, float] | None:
    x1, y1, x2, y2 = box
    c = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
    if c[2] <= c[0] or c[3] <= c[1]:
        summary.degenerate += 1
        return None
    summary.clipped += c != box
    return c


def _read_records(
    image_dir: Path,
    label_dir: Path,
    mapping: ClassMapping | None,
    allow_unmatched: bool,
    summary: KittiSummary,
) -> list[_Record]:
    problems: list[str] = []
    images, labels = pair_files(image_dir, label_dir, problems)
    no_label = [p.name for s, p in images.items() if s not in labels]
    no_image = [p.name for s, p in labels.items() if s not in images]
    if not allow_unmatched:
        for what, names, where in (
            ("image(s) have no label file", no_label, label_dir),
            ("label file(s) have no image", no_image, image_dir),
        ):
            if names:
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                problems.append(
                    f"{len(names)} {what} in {where}: {shown} (wrong folder? "
                    "--allow-unmatched keeps such images empty and ignores such labels)"
                )
    summary.images_without_labels = len(no_label) if allow_unmatched else 0
    summary.labels_without_images = len(no_image) if allow_unmatched else 0
    unknown: Counter[str] = Counter()
    records: list[_Record] = []
    for stem, img in images.items():
        try:
            with Image.open(img) as im:
                w, h = im.size
        except (OSError, UnidentifiedImageError) as e:
            problems.append(f"{img}: not a readable image ({type(e).__name__}: {e})")
            continue
        objects = read_label_file(labels[stem], problems) if stem in labels else []
        kept = []
        for obj in objects:
            target = _classify(obj, mapping, summary, unknown)
            box = _clip(obj.box, w, h, summary) if target else None
            if target and box:
                kept.append((target, box))
        records.append(_Record(img, w, h, kept))
    if unknown:
        counts = ", ".join(f"{c} ({n} object(s))" for c, n in sorted(unknown.items()))
        problems.append(
            f"--class-map does not mention {len(unknown)} class(es) found in {label_dir}: "
            f"{counts}; map each to a target, or drop it explicitly with an empty target "
            f"(e.g. {next(iter(sorted(unknown)))}=)"
        )
    if problems:
        raise _listed(problems)
    return records


def kitti_to_coco(
    image_dir: str | Path,
    label_dir: str | Path,
    output: str | Path,
    *,
    val_split: float = 0.0,
    num_shards: int = 1,
    class_map: str | ClassMapping | None = None,
    seed: int = 42,
    allow_unmatched: bool = False,
) -> KittiSummary:
    """Convert a KITTI folder pair into COCO JSON file(s); nothing is written on any error.

    Args:
        val_split: percent of the images (shuffled with ``seed``) written as the val split.
        num_shards: files per split; images are dealt round-robin.
        class_map: a :class:`ClassMapping`, or the ``--class-map`` text (file or inline).
            Without one every class is kept under its own name (``DontCare`` excepted) and
            category ids follow the sorted names.
    """
    if not 0 <= val_split < 100:
        raise DataError(f"--val-split must be a percentage in [0, 100), got {val_split}")
    if num_shards < 1:
        raise DataError(f"--num-shards must be >= 1, got {num_shards}")
    mapping = parse_class_map(class_map) if isinstance(class_map, str) else class_map
    summary = KittiSummary()
    records = _read_records(Path(image_dir), Path(label_dir), mapping, allow_unmatched, summary)
    if mapping is not None:
        names = list(mapping.order)
    else:
        names = sorted({cls for r in records for cls, _ in r.objects})
    if not names:
        raise DataError(f"{label_dir}: no class is left to train on (every object was dropped)")
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    random.Random(seed).shuffle(records)
    n_val = int(len(records) * val_split / 100)
    if val_split > 0 and n_val == 0:
        raise DataError(
            f"--val-split {val_split:g} of {len(records)} image(s) selects no val image"
        )
    splits = {"train": records[n_val:], "val": records[:n_val]} if n_val else {"train": records}
    for split, items in splits.items():
        if len(items) < num_shards:
            raise DataError(
                f"--num-shards {num_shards}: the {split} split has only {len(items)} image(s), "
                "so some shards would be empty"
            )
    paths = output_names(Path(output), list(splits), num_shards)
    _refuse_stale_shards(paths)
    categories = [{"id": i, "name": n} for n, i in cat_id.items()]
    documents: list[tuple[Path, dict[str, Any]]] = []
    image_id = ann_id = 0
    for split, items in splits.items():
        for s, path in enumerate(paths[split]):
            coco: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
            for rec in items[s::num_shards]:
                image_id += 1
                coco["images"].append(
                    {
                        "id": image_id,
                        "file_name": rec.image.name,
                        "width": rec.width,
                        "height": rec.height,
                    }
                )
                summary.empty_images += not rec.objects
                for cls, (x1, y1, x2, y2) in rec.objects:
                    ann_id += 1
                    coco["annotations"].append(
                        {
                            "id": ann_id,
                            "image_id": image_id,
                            "category_id": cat_id[cls],
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": 0,
                        }
                    )
            documents.append((path, coco))
    for path, coco in documents:  # everything is built before the first file is written
        atomic_write_text(path, json.dumps(coco))
    summary.images, summary.annotations = image_id, ann_id
    summary.categories = names
    summary.files = [p for p, _ in documents]
    for warning in summary.warnings():
        log.warning("warning: %s", warning)
    return summary
