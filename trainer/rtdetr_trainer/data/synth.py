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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rtdetr_spec import WAREHOUSE_CLASSES
from rtdetr_spec.artifacts import atomic_write_bytes, atomic_write_text, commit_file
from rtdetr_trainer.data.outputs import check_outputs

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
Rng = np.random.Generator


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


def _c(rng: Rng, base: tuple[int, int, int], jitter: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(b + rng.integers(-jitter, jitter + 1), 0, 255)) for b in base)  # type: ignore[return-value]


def _person(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    skin = _c(rng, [(224, 172, 135), (141, 85, 36), (198, 134, 66)][rng.integers(3)], 10)
    shirt = _c(rng, [(250, 200, 0), (255, 120, 0), (40, 90, 200), (200, 30, 30)][rng.integers(4)])
    head_r = max(2, int(w * 0.28))
    cx = x0 + w // 2
    d.ellipse([cx - head_r, y0, cx + head_r, y0 + 2 * head_r], fill=skin)
    torso_top, torso_bot = y0 + 2 * head_r, y0 + int(h * 0.6)
    d.rectangle([x0, torso_top, x1 - 1, torso_bot], fill=shirt)
    legs = _c(rng, (40, 40, 60))
    d.rectangle([x0 + w // 8, torso_bot, cx - 1, y1 - 1], fill=legs)
    d.rectangle([cx + 1, torso_bot, x1 - 1 - w // 8, y1 - 1], fill=legs)


def _digit(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    body = _c(rng, (60, 70, 95))
    d.rectangle([x0 + w // 4, y0, x1 - 1 - w // 4, y0 + h // 7], fill=_c(rng, (20, 20, 25)))
    d.polygon(
        [
            (x0, y0 + h // 6),
            (x1 - 1, y0 + h // 6),
            (x1 - 1 - w // 5, y0 + h // 2),
            (x0 + w // 5, y0 + h // 2),
        ],
        fill=body,
    )
    lw = max(2, w // 7)
    for side in (x0 + w // 4, x1 - 1 - w // 4):  # legs bending backwards like a bird's
        knee = (side + w // 4 if side < x0 + w // 2 else side + w // 6, y0 + int(h * 0.72))
        d.line([(side, y0 + h // 2), knee, (side - w // 8, y1 - 2)], fill=body, width=lw)
        d.line([(side - w // 4, y1 - 2), (side + w // 8, y1 - 2)], fill=(15, 15, 15), width=lw)


def _gr1(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    white = _c(rng, (235, 235, 230), 10)
    cx = x0 + w // 2
    d.rounded_rectangle(
        [cx - w // 4, y0, cx + w // 4, y0 + h // 7],
        radius=max(1, w // 8),
        fill=white,
        outline=(20, 20, 20),
    )
    d.rectangle([x0 + w // 8, y0 + h // 6, x1 - 1 - w // 8, y0 + int(h * 0.55)], fill=white)
    d.rectangle([x0, y0 + h // 6, x0 + w // 8, y0 + int(h * 0.5)], fill=white)
    d.rectangle([x1 - 1 - w // 8, y0 + h // 6, x1 - 1, y0 + int(h * 0.5)], fill=white)
    d.rectangle([x0 + w // 5, y0 + int(h * 0.55), cx - 2, y1 - 1], fill=white)
    d.rectangle([cx + 2, y0 + int(h * 0.55), x1 - 1 - w // 5, y1 - 1], fill=white)
    r = max(1, w // 10)
    for jx, jy in [
        (cx, y0 + h // 6),
        (x0 + w // 3, y0 + int(h * 0.75)),
        (x1 - w // 3, y0 + int(h * 0.75)),
        (x0 + w // 12, y0 + h // 3),
        (x1 - w // 12, y0 + h // 3),
    ]:
        d.ellipse([jx - r, jy - r, jx + r, jy + r], fill=(15, 15, 15))


def _carter(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    d.rectangle(
        [x0 + w // 2 - w // 10, y0, x0 + w // 2 + w // 10, y0 + h // 4], fill=_c(rng, (30, 30, 30))
    )
    d.rounded_rectangle(
        [x0, y0 + h // 4, x1 - 1, y0 + int(h * 0.8)],
        radius=max(1, h // 6),
        fill=_c(rng, (45, 55, 50)),
    )
    d.rectangle(
        [x0 + w // 8, y0 + int(h * 0.45), x1 - 1 - w // 8, y0 + int(h * 0.52)],
        fill=_c(rng, (60, 220, 90)),
    )
    r = max(2, h // 6)
    for wx in (x0 + r, x1 - 1 - r):
        d.ellipse([wx - r, y1 - 1 - 2 * r, wx + r, y1 - 1], fill=(10, 10, 10))


def _transporter(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    h = y1 - y0
    base = _c(rng, (240, 150, 20))
    d.rectangle([x0, y0, x1 - 1, y0 + int(h * 0.7)], fill=base)
    step = max(4, h // 2)
    for sx in range(x0, x1, step * 2):
        d.polygon(
            [
                (sx, y0 + int(h * 0.7)),
                (sx + step, y0),
                (min(sx + 2 * step, x1 - 1), y0),
                (sx + step, y0 + int(h * 0.7)),
            ],
            fill=(20, 20, 20),
        )
    r = max(1, h // 6)
    for wx in np.linspace(x0 + r, x1 - 1 - r, 4):
        d.ellipse([wx - r, y1 - 1 - 2 * r, wx + r, y1 - 1], fill=(30, 30, 30))


def _forklift(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    yellow = _c(rng, (245, 210, 30))
    mast = _c(rng, (90, 90, 90))
    d.rectangle([x0, y0, x0 + w // 10, y1 - 1], fill=mast)
    d.rectangle([x0 + w // 6, y0, x0 + w // 6 + w // 12, y1 - 1], fill=mast)
    d.rectangle([x0, y1 - 1 - h // 12, x0 + w // 2, y1 - 1], fill=(120, 120, 120))  # forks
    d.rectangle([x0 + w // 3, y0 + h // 3, x1 - 1, y1 - 1 - h // 6], fill=yellow)
    d.line(
        [
            (x0 + w // 3, y0 + h // 3),
            (x0 + w // 2, y0),
            (x1 - 1 - w // 8, y0),
            (x1 - 1 - w // 8, y0 + h // 3),
        ],
        fill=(20, 20, 20),
        width=max(2, w // 20),
    )
    r = max(2, h // 8)
    for wx in (x0 + w // 2, x1 - 1 - r):
        d.ellipse([wx - r, y1 - 1 - 2 * r, wx + r, y1 - 1], fill=(15, 15, 15))


def _pallet(d: ImageDraw.ImageDraw, b: Box, rng: Rng) -> None:
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    wood = _c(rng, (160, 110, 60))
    dark = _c(rng, (95, 60, 30), 10)
    d.rectangle([x0, y0, x1 - 1, y0 + h // 4], fill=wood)
    d.rectangle([x0, y1 - 1 - h // 5, x1 - 1, y1 - 1], fill=wood)
    bw = max(2, w // 7)
    for bx in (x0, x0 + w // 2 - bw // 2, x1 - bw):
        d.rectangle([bx, y0, bx + bw - 1, y1 - 1], fill=dark)
    for sx in range(x0, x1, max(3, w // 9)):
        d.line([(sx, y0), (sx, y0 + h // 4)], fill=dark, width=1)


RENDERERS: dict[str, Callable[[ImageDraw.ImageDraw, Box, Rng], None]] = {
    "person": _person,
    "agility_digit": _digit,
    "gr1_t2": _gr1,
    "nova_carter": _carter,
    "transporter": _transporter,
    "forklift": _forklift,
    "pallet": _pallet,
}


def _background(width: int, height: int, rng: Rng) -> Image.Image:
    floor = np.linspace(rng.integers(90, 130), rng.integers(150, 200), height)[:, None, None]
    tint = rng.uniform(0.85, 1.1, size=3)[None, None, :]
    arr = np.broadcast_to(floor * tint, (height, width, 3)).copy()
    arr += rng.normal(0, 6, size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    horizon = int(height * rng.uniform(0.25, 0.45))
    for _ in range(rng.integers(2, 5)):  # shelving racks along the back wall
        sx = int(rng.integers(0, width))
        sw = int(rng.integers(width // 8, width // 3))
        top = int(rng.integers(0, max(1, horizon // 2)))
        color = _c(rng, (70, 90, 140), 25)
        d.rectangle([sx, top, sx + sw, horizon], outline=color, width=2)
        for ly in range(top, horizon, max(6, (horizon - top) // 3 + 1)):
            d.line([(sx, ly), (sx + sw, ly)], fill=color, width=2)
    for _ in range(rng.integers(1, 4)):  # floor markings
        y = int(rng.integers(horizon, height))
        d.line([(0, y), (width, y + int(rng.integers(-20, 20)))], fill=(220, 200, 60), width=2)
    for _ in range(rng.integers(2, 6)):  # unlabelled clutter: cardboard boxes
        bw, bh = int(rng.integers(6, width // 10 + 7)), int(rng.integers(6, height // 10 + 7))
        bx, by = int(rng.integers(0, width - bw)), int(rng.integers(horizon, height - bh))
        d.rectangle(
            [bx, by, bx + bw, by + bh], fill=_c(rng, (170, 140, 100), 25), outline=(90, 70, 50)
        )
    return img


def _iou(a: Box, b: Box) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def render_scene(cfg: SynthConfig, rng: Rng) -> tuple[Image.Image, list[tuple[int, Box]]]:
    """One image and its objects as (category id 1..7, box) pairs."""
    img = _background(cfg.width, cfg.height, rng)
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
