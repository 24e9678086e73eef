"""``rtdetr dataset convert``: COCO folders -> per-camera H5, and KITTI -> COCO (TAO's convert).

* ``coco-to-h5``: packs a COCO image folder into the seed's option-2 layout. Images are grouped
  into one ``<camera>.h5`` per sub-folder of their ``file_name`` (``Camera_01/0001.jpg`` ->
  ``Camera_01.h5``; files at the top level go to ``Camera_01.h5``), or all into one file. Frames
  are stored as the original encoded bytes (exact, compact, readable here) or, with ``--arrays``,
  as decoded BGR uint8 arrays with ``channel_order: BGR`` on the ``rgb`` group, the one form
  TAO itself can read. The annotation file is rewritten with ``h5://<camera>:<key>`` names.
  The source is fully validated first, so nothing is written for a broken dataset.
* ``kitti-to-coco``: what TAO's D-DETR/DINO/RT-DETR ``dataset convert`` does: KITTI label files
  (``class trunc occ alpha x1 y1 x2 y2 ...``) become COCO JSON, optionally mapped to target class
  names, split into a random val fold (``--val-split`` percent) and sharded
  (``train-shard-00000-of-00004.json``; point ``json_file`` at ``.../train-shard-*``).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_trainer.data.classmap import build_class_map
from rtdetr_trainer.data.coco import build_index, categories_of, read_source
from rtdetr_trainer.data.h5 import is_h5_uri
from rtdetr_trainer.errors import DataError

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def coco_to_h5(
    image_dir: str, json_file: str, output: str, *, arrays: bool = False, camera: str = "folder"
) -> Path:
    """Write ``<output>/<camera>.h5`` files and ``<output>/annotations/<json name>``."""
    files = read_source(image_dir, json_file, 0, "--image-dir/--json-file")
    if len(files) != 1:
        raise DataError(
            f"--json-file must name one annotation file, {json_file} matches {len(files)}"
        )
    cats = categories_of(files)
    build_index(files, build_class_map(cats, max(cats) + 1))  # validate everything first
    data: dict[str, Any] = json.loads(json.dumps(files[0].data))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    handles: dict[str, h5py.File] = {}
    try:
        for img in data["images"]:
            name = img["file_name"]
            if is_h5_uri(name):
                raise DataError(f"image id {img['id']}: {name} is already an H5 frame")
            rel = Path(name)
            cam = "Camera_01" if camera == "single" or len(rel.parts) == 1 else rel.parts[0]
            cam = SAFE.sub("_", cam)
            key = SAFE.sub(
                "_",
                "_".join(rel.parts[1:])
                if camera == "folder" and len(rel.parts) > 1
                else "_".join(rel.parts),
            )
            f = handles.get(cam)
            if f is None:
                f = handles[cam] = h5py.File(out / f"{cam}.h5", "w")
                group = f.create_group("rgb")
                if arrays:
                    group.attrs["channel_order"] = "BGR"
            if key in f["rgb"]:
                raise DataError(f"image id {img['id']}: frame key {key!r} repeats in {cam}.h5")
            src = rel if rel.is_absolute() else Path(image_dir) / rel
            if arrays:
                with Image.open(src) as im:
                    rgb = np.asarray(im.convert("RGB"))
                f["rgb"].create_dataset(key, data=np.ascontiguousarray(rgb[:, :, ::-1]))
            else:
                f["rgb"].create_dataset(key, data=np.frombuffer(src.read_bytes(), np.uint8))
            img["file_name"] = f"h5://{cam}:{key}"
    finally:
        for f in handles.values():
            f.close()
    target = out / "annotations" / Path(json_file).name
    atomic_write_text(target, json.dumps(data))
    return target


def _read_kitti(path: Path) -> list[tuple[str, list[float]]]:
    objects = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 8:
            raise DataError(f"{path}:{n}: a KITTI line needs at least 8 fields, got {len(parts)}")
        try:
            box = [float(v) for v in parts[4:8]]
        except ValueError:
            raise DataError(f"{path}:{n}: x1 y1 x2 y2 (fields 5-8) must be numbers") from None
        objects.append((parts[0], box))
    return objects


def kitti_to_coco(
    image_dir: str,
    label_dir: str,
    output: str,
    *,
    val_split: float = 0.0,
    num_shards: int = 1,
    mapping: str | None = None,
    seed: int = 42,
) -> list[Path]:
    """Convert a KITTI folder pair; returns the written JSON files."""
    images = sorted(
        p
        for p in Path(image_dir).iterdir()
        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")
    )
    if not images:
        raise DataError(f"--image-dir: no images in {image_dir}")
    if not 0 <= val_split < 100 or num_shards < 1:
        raise DataError("--val-split must be in [0, 100) and --num-shards >= 1")
    class_map: dict[str, str] | None = None
    if mapping:
        class_map = {k.lower(): v for k, v in json.loads(Path(mapping).read_text()).items()}
    records: list[tuple[Path, int, int, list[tuple[str, list[float]]]]] = []
    names: list[str] = list(dict.fromkeys(class_map.values())) if class_map else []
    for img in images:
        label = Path(label_dir) / f"{img.stem}.txt"
        objects = _read_kitti(label) if label.exists() else []
        kept = []
        for cls, box in objects:
            target = class_map.get(cls.lower()) if class_map is not None else cls
            if target is None:
                continue
            if target not in names:
                names.append(target)
            kept.append((target, box))
        with Image.open(img) as im:
            w, h = im.size
        records.append((img, w, h, kept))
    cat_id = {n: i + 1 for i, n in enumerate(names if class_map else sorted(names))}
    random.Random(seed).shuffle(records)
    n_val = int(len(records) * val_split / 100)
    splits = {"val": records[:n_val], "train": records[n_val:]}
    written: list[Path] = []
    out = Path(output)
    image_id = ann_id = 0
    for split, items in splits.items():
        if not items:
            continue
        for s in range(num_shards):
            shard = items[s::num_shards]
            coco: dict[str, Any] = {
                "images": [],
                "annotations": [],
                "categories": [
                    {"id": i, "name": n} for n, i in sorted(cat_id.items(), key=lambda kv: kv[1])
                ],
            }
            for img, w, h, objs in shard:
                image_id += 1
                coco["images"].append(
                    {"id": image_id, "file_name": img.name, "width": w, "height": h}
                )
                for cls, (x1, y1, x2, y2) in objs:
                    x1, y1 = max(0.0, x1), max(0.0, y1)
                    x2, y2 = min(float(w), x2), min(float(h), y2)
                    if x2 <= x1 or y2 <= y1:
                        continue
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
            name = (
                f"{split}.json"
                if num_shards == 1
                else (f"{split}-shard-{s:05d}-of-{num_shards:05d}.json")
            )
            atomic_write_text(out / name, json.dumps(coco))
            written.append(out / name)
    return written
