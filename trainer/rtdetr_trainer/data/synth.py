"""Synthetic warehouse scenes with the model card's 7 classes, as COCO folders or per-camera H5
files.

Used by ``make demo`` and the tests: real data is not shipped, and a detector must have something
learnable to show that the whole pipeline works. Each class is a rendered object with its own
silhouette, aspect ratio, colours and texture (a thin person with a head; a bird-legged dark
Digit; a white GR1 with black joints; a squat wheeled Nova Carter with a sensor dome; a long low
striped transporter; a yellow forklift with mast and forks; a wide slatted pallet), so shape
alone identifies it even when colour augmentation shuffles channels. Objects get random sizes and
positions, may occlude each other (drawn far to near), and sit on a cluttered floor with shelves
and unlabelled boxes. Output is deterministic for a seed.

Every file is written under a temporary name and renamed into place, and an output that already
holds any file of the layout below is refused unless ``overwrite``
(:mod:`rtdetr_trainer.data.outputs`), so an existing dataset is never half-replaced.

Layout (category ids 1..7 named in NVIDIA's model card order, image ids unique across splits):

    coco: <out>/images/{train,val,test}/<name>.jpg, <out>/annotations/{train,val,test}.json
    h5:   <out>/Camera_NN.h5 (group rgb: rgb_NNNNN.jpg -> JPEG bytes, or BGR uint8 arrays),
          <out>/annotations/{split}.json with file_name h5://Camera_NN:rgb_NNNNN.jpg
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rtdetr_spec import WAREHOUSE_CLASSES
from rtdetr_spec.artifacts import atomic_write_bytes, atomic_write_text, commit_file
from rtdetr_trainer.data.outputs import check_outputs
from rtdetr_trainer.data.synth_draw import RENDERERS, Box, Rng, background


@dataclass(frozen=True)
class SynthConfig:
    num_images: int = 60
    width: int = 256
    height: int = 256
    seed: int = 0
    format: str = "coco"  # coco | h5
    h5_arrays: bool = False
    cameras: int = 3
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15)
    max_objects: int = 4
    min_rel_height: float = 0.22
    max_rel_height: float = 0.6


#: Scenes a short CPU schedule learns from (``make demo``, the local cluster's examples): at most
#: 3 objects, each 30-70% of the image height (wide classes are drawn shorter), so every class is
#: a few dozen pixels at least; 80/10/10 splits.
CPU_DEMO_SCENES: dict[str, object] = {
    "max_objects": 3,
    "min_rel_height": 0.3,
    "max_rel_height": 0.7,
    "splits": (0.8, 0.1, 0.1),
}

#: aspect ratio (w / h) range per class, in WAREHOUSE_CLASSES order.
ASPECTS: dict[str, tuple[float, float]] = {
    "person": (0.32, 0.45),
    "agility_digit": (0.5, 0.65),
    "gr1_t2": (0.36, 0.46),
    "nova_carter": (1.15, 1.5),
    "transporter": (2.6, 3.6),
    "forklift": (0.85, 1.15),
    "pallet": (1.9, 2.6),
}
#: objects that are wide relative to their height are drawn shorter.
HEIGHT_SCALE: dict[str, float] = {
    "nova_carter": 0.55,
    "transporter": 0.3,
    "pallet": 0.32,
    "forklift": 0.85,
}


def _iou(a: Box, b: Box) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def render_scene(cfg: SynthConfig, rng: Rng) -> tuple[Image.Image, list[tuple[int, Box]]]:
    """One image and its objects as (category id 1..7, box) pairs."""
    img = background(cfg.width, cfg.height, rng)
    objects: list[tuple[int, Box]] = []
    for _ in range(int(rng.integers(1, cfg.max_objects + 1))):
        cls = int(rng.integers(len(WAREHOUSE_CLASSES)))
        name = WAREHOUSE_CLASSES[cls]
        for _try in range(20):
            rel = rng.uniform(cfg.min_rel_height, cfg.max_rel_height) * HEIGHT_SCALE.get(name, 1.0)
            h = max(12, int(rel * cfg.height))
            w = max(8, int(h * rng.uniform(*ASPECTS[name])))
            if w >= cfg.width or h >= cfg.height:
                continue
            x0 = int(rng.integers(0, cfg.width - w))
            y0 = int(rng.integers(0, cfg.height - h))
            box = (x0, y0, x0 + w, y0 + h)
            if all(_iou(box, other) < 0.3 for _, other in objects):
                objects.append((cls + 1, box))
                break
    objects.sort(key=lambda o: o[1][3])  # far (higher up) first, near objects occlude them
    d = ImageDraw.Draw(img)
    for cid, box in objects:
        RENDERERS[WAREHOUSE_CLASSES[cid - 1]](d, box, rng)
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.8))))
    return img, objects


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _split_of(i: int, n: int, splits: tuple[float, float, float]) -> str:
    train_end = round(n * splits[0])
    val_end = train_end + round(n * splits[1])
    return "train" if i < train_end else "val" if i < val_end else "test"


def _targets(out: Path, cfg: SynthConfig) -> list[Path]:
    """Every file :func:`generate` writes, annotation files first."""
    paths = [out / "annotations" / f"{s}.json" for s in ("train", "val", "test")]
    if cfg.format == "h5":
        cams = min(max(1, cfg.cameras), cfg.num_images)
        return paths + [out / f"Camera_{c + 1:02d}.h5" for c in range(cams)]
    for i in range(cfg.num_images):
        split = _split_of(i, cfg.num_images, cfg.splits)
        paths.append(out / "images" / split / f"{split}_{i:05d}.jpg")
    return paths


def _new_h5(out: Path, cam: int, arrays: bool) -> tuple[Path, h5py.File]:
    """A camera's H5 file under a temporary name in ``out`` (renamed when complete)."""
    fd, tmp = tempfile.mkstemp(prefix=f".Camera_{cam + 1:02d}.h5.", suffix=".tmp", dir=out)
    os.close(fd)
    f = h5py.File(tmp, "w")
    group = f.create_group("rgb")
    if arrays:
        group.attrs["channel_order"] = "BGR"
    return Path(tmp), f


def generate(output: str | Path, cfg: SynthConfig, *, overwrite: bool = False) -> dict[str, Path]:
    """Write the dataset; returns {split: annotation file}."""
    if cfg.format not in ("coco", "h5"):
        raise ValueError(f"format must be coco or h5, got {cfg.format!r}")
    out = Path(output)
    check_outputs(out, _targets(out, cfg), [], overwrite=overwrite)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(WAREHOUSE_CLASSES)]
    coco = {
        s: {"images": [], "annotations": [], "categories": categories}
        for s in ("train", "val", "test")
    }
    h5_files: dict[int, tuple[Path, h5py.File]] = {}
    ann_id = 0
    try:
        for i in range(cfg.num_images):
            rng = np.random.default_rng([cfg.seed, i])
            img, objects = render_scene(cfg, rng)
            split = _split_of(i, cfg.num_images, cfg.splits)
            if cfg.format == "coco":
                name = f"{split}_{i:05d}.jpg"
                atomic_write_bytes(out / "images" / split / name, _jpeg(img))
                file_name = f"{split}/{name}"
            else:
                cam = i % max(1, cfg.cameras)
                if cam not in h5_files:
                    h5_files[cam] = _new_h5(out, cam, cfg.h5_arrays)
                f = h5_files[cam][1]
                key = f"rgb_{i:05d}.jpg"
                if cfg.h5_arrays:
                    f["rgb"].create_dataset(key, data=np.asarray(img)[:, :, ::-1])
                else:
                    f["rgb"].create_dataset(key, data=np.frombuffer(_jpeg(img), dtype=np.uint8))
                file_name = f"h5://Camera_{cam + 1:02d}:{key}"
            coco[split]["images"].append(
                {"id": i + 1, "file_name": file_name, "width": cfg.width, "height": cfg.height}
            )
            for cid, (x0, y0, x1, y1) in objects:
                ann_id += 1
                coco[split]["annotations"].append(
                    {
                        "id": ann_id,
                        "image_id": i + 1,
                        "category_id": cid,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                    }
                )
        for cam, (tmp, f) in sorted(h5_files.items()):
            f.close()
            commit_file(tmp, out / f"Camera_{cam + 1:02d}.h5")
    finally:
        for tmp, f in h5_files.values():
            if f.id.valid:
                f.close()
            tmp.unlink(missing_ok=True)
    paths = {}
    for split, data in coco.items():
        paths[split] = out / "annotations" / f"{split}.json"
        atomic_write_text(paths[split], json.dumps(data))
    return paths
