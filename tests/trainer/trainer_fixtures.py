"""Small datasets and helpers shared by the trainer's data/engine/CLI tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rtdetr_trainer.data.synth import SynthConfig, generate

SEVEN = ["person", "agility_digit", "gr1_t2", "nova_carter", "transporter", "forklift", "pallet"]


def seven_categories(first_id: int = 1) -> list[dict[str, Any]]:
    return [{"id": first_id + i, "name": n} for i, n in enumerate(SEVEN)]


def write_image(path: Path, size: tuple[int, int] = (64, 48), color: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (color, color // 2, 255 - color)).save(path)
    return path


def write_coco(
    root: Path,
    *,
    images: list[dict[str, Any]] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    categories: list[dict[str, Any]] | None = None,
    name: str = "train.json",
    make_files: bool = True,
) -> tuple[Path, Path]:
    """A COCO file under ``root/annotations`` and images under ``root/images``.

    Returns (image_dir, json_file). Defaults: two 64x48 images with one box each.
    """
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
        ]
    if annotations is None:
        annotations = [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 30], "area": 600},
            {"id": 11, "image_id": 2, "category_id": 7, "bbox": [30, 10, 30, 20], "area": 600},
        ]
    if categories is None:
        categories = seven_categories()
    if make_files:
        for img in images:
            fn = img.get("file_name", "")
            if isinstance(fn, str) and fn and not fn.startswith("h5://"):
                write_image(image_dir / fn, (img.get("width", 64), img.get("height", 48)))
    json_file = root / "annotations" / name
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return image_dir, json_file


def synth_dataset(root: Path, **kwargs: Any) -> dict[str, Path]:
    """A tiny synthetic warehouse set (category ids 1..7); see rtdetr_trainer.data.synth."""
    cfg = SynthConfig(**{"num_images": 12, "width": 96, "height": 96, "seed": 3, **kwargs})
    return generate(root, cfg)


def rgb_array(h: int = 8, w: int = 10) -> np.ndarray:
    """A frame whose channels differ, so a BGR/RGB swap is visible: R=200, G=100, B=10."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = 200, 100, 10
    return arr


#: A small RT-DETR (ResNet-18, 64-wide, 20 queries, 1 decoder layer) for 64x64 CPU tests.
TINY_MODEL: dict[str, Any] = {
    "backbone": "resnet_18",
    "hidden_dim": 64,
    "feat_channels": [64, 64, 64],
    "dim_feedforward": 128,
    "num_queries": 20,
    "num_select": 20,
    "dec_layers": 1,
    "dn_number": 10,
}


def tiny_spec_dict(root: Path, paths: dict[str, Path], size: int = 64, **train: Any) -> dict:
    """An experiment (as a dict) training the tiny model on a synth set under ``root``."""
    data = str(paths["train"].parent.parent / "images")
    if not Path(data).is_dir():  # h5 layout: frames next to annotations/
        data = str(paths["train"].parent.parent)
    return {
        "results_dir": str(root / "results"),
        "model": dict(TINY_MODEL),
        "dataset": {
            "num_classes": 7,
            "batch_size": 2,
            "workers": 0,
            "train_data_sources": [{"image_dir": data, "json_file": str(paths["train"])}],
            "val_data_sources": {"image_dir": data, "json_file": str(paths["val"])},
            "test_data_sources": {"image_dir": data, "json_file": str(paths["test"])},
            "augmentation": {
                "train_spatial_size": [size, size],
                "eval_spatial_size": [size, size],
                "multi_scales": [[size, size]],
            },
        },
        "train": {"num_epochs": 1, "activation_checkpoint": False, "precision": "fp32", **train},
    }


def overrides_from(d: dict, prefix: str = "") -> list[str]:
    """Flatten a spec dict into CLI ``key=value`` overrides (lists/dicts as YAML flow)."""
    import yaml

    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += overrides_from(v, key + ".")
        else:
            out.append(f"{key}={yaml.safe_dump(v, default_flow_style=True).strip()}")
            if out[-1].endswith("\n..."):
                out[-1] = out[-1][: -len("\n...")]
    return out


def tiny_checkpoint(root: Path) -> tuple[Path, Path, dict[str, Path]]:
    """A synth set, a spec for the tiny model on it and a checkpoint of that model with the
    set's class map: (spec file, checkpoint, synth paths)."""
    import torch
    import yaml

    from rtdetr_spec import load_experiment
    from rtdetr_trainer.data.classmap import build_class_map
    from rtdetr_trainer.model import build_model
    from rtdetr_trainer.model.weights import to_tao_state_dict

    paths = synth_dataset(root / "data", num_images=8, width=64, height=64)
    spec_file = root / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_spec_dict(root, paths)))
    spec = load_experiment(spec_file)
    torch.manual_seed(0)
    model = build_model(spec.model, 7, (64, 64), load_backbone_weights=False)
    categories = json.loads(paths["test"].read_text())["categories"]
    classes = build_class_map({c["id"]: c["name"] for c in categories}, 7)
    ckpt = root / "model.pth"
    torch.save(
        {"state_dict": to_tao_state_dict(model), "epoch": 0, "class_map": classes.model_dump()},
        ckpt,
    )
    return spec_file, ckpt, paths
