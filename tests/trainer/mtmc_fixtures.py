"""Shared helpers of the MTMC conversion tests: a small real scene, and reading results back.

The expectations are computed from the scene's own ``ground_truth.json`` with plain ``json``,
independently of the converter's streaming index.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import h5py
from PIL import Image

from rtdetr_trainer.cli import main
from rtdetr_trainer.data.mtmc.synth import SCENE_TYPES, SceneConfig, write_scene

CONFIG = SceneConfig(cameras=3, frames=30, width=160, height=96, objects=7, seed=3)


def make_scene(root: Path, cfg: SceneConfig = CONFIG) -> Path:
    return write_scene(root / "Warehouse_900", cfg)


def copy_scene(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst / src.name)
    return dst / src.name


def convert(scene: Path, out: Path, *args: str) -> int:
    command = ["dataset", "convert", "mtmc", "--scene", str(scene), "--output", str(out)]
    return main([*command, *args, "--no-progress"])


def expected_boxes(scene: Path, stride: int) -> dict[tuple[str, int], list[tuple[str, list]]]:
    """(camera, frame) -> [(model-card class, [x1, y1, x2, y2])] for every visible box."""
    gt = json.loads((scene / "ground_truth.json").read_text())
    out: dict[tuple[str, int], list[tuple[str, list]]] = {}
    for key, objects in gt.items():
        frame = int(key)
        if frame % stride:
            continue
        for obj in objects:
            for cam, box in obj["2d bounding box visible"].items():
                out.setdefault((cam, frame), []).append((SCENE_TYPES[obj["object type"]], box))
    return out


def load_coco(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def coco_boxes(coco: dict[str, Any]) -> dict[tuple[str, int], list[tuple[str, list]]]:
    """The same shape as :func:`expected_boxes`, read from a converted COCO file."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {}
    for img in coco["images"]:
        cam, _, key = img["file_name"].removeprefix("h5://").partition(":")
        images[img["id"]] = (cam, int(key[4:9]))
    out: dict[tuple[str, int], list[tuple[str, list]]] = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        out.setdefault(images[ann["image_id"]], []).append(
            (names[ann["category_id"]], [x, y, x + w, y + h])
        )
    return out


def read_frame(out: Path, camera: str, key: str) -> Image.Image:
    with h5py.File(out / f"{camera}.h5", "r") as f:
        return Image.open(io.BytesIO(f["rgb"][key][()].tobytes())).convert("RGB")
