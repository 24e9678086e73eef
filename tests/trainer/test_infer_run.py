"""``rtdetr inference``: inputs from folders and H5 files, KITTI lines, drawing, JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from rtdetr_spec import ModelConfig, load_experiment
from rtdetr_trainer.data.classmap import build_class_map
from rtdetr_trainer.errors import DataError, UserInputError
from rtdetr_trainer.inference.run import draw, kitti_line, resolve_colors, run_inference
from rtdetr_trainer.inference.sources import list_inputs
from rtdetr_trainer.model.build import build_model
from rtdetr_trainer.model.weights import to_tao_state_dict
from tests.trainer.trainer_fixtures import SEVEN, TINY_MODEL, rgb_array

KITTI = re.compile(
    r"^\S+ 0\.00 0 0\.00 (\d+\.\d{3} ){4}0\.00 0\.00 0\.00 0\.00 0\.00 0\.00 0\.00 \d\.\d{3}$"
)


def _inputs(root: Path) -> Path:
    folder = root / "in"
    folder.mkdir(parents=True)
    Image.fromarray(rgb_array(48, 64)).save(folder / "frame.png")
    (folder / "notes.txt").write_text("not an image")
    with h5py.File(folder / "Camera_01.h5", "w") as f:
        g = f.create_group("rgb")
        g.create_dataset("rgb_00001.jpg", data=rgb_array(48, 64)[:, :, ::-1])
        g.create_dataset("raw", data=rgb_array(40, 40)[:, :, ::-1])
    return folder


def test_inputs_cover_images_and_every_h5_key(tmp_path: Path) -> None:
    folder = _inputs(tmp_path)
    names = [i.output_name for i in list_inputs([str(folder)])]
    assert names == ["Camera_01_raw.png", "Camera_01_rgb_00001.jpg", "frame.png"]
    two = list_inputs([str(folder), str(folder)])
    assert {n.output_name.split("/")[0] for n in two} == {"in", "1_in"}
    with pytest.raises(DataError, match="is not a folder"):
        list_inputs([str(tmp_path / "missing")])


def test_kitti_line_is_taos_format() -> None:
    line = kitti_line("person", np.array([12, 30.5, 80.25, 200]), 0.9134)
    assert line == (
        "person 0.00 0 0.00 12.000 30.500 80.250 200.000 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.913"
    )
    assert KITTI.match(line)


def test_color_map_limits_what_is_drawn() -> None:
    img = Image.new("RGB", (100, 100), (0, 0, 0))
    det = {
        "scores": np.array([0.9, 0.9], np.float32),
        "labels": np.array([0, 5]),
        "boxes": np.array([[10, 10, 40, 40], [50, 50, 90, 90]], np.float32),
    }
    colors = resolve_colors({"person": "green"}, list(SEVEN))
    out = np.asarray(draw(img, det, list(SEVEN), colors, threshold=0.5, width=3))
    assert (out[10:13, 20] == [0, 128, 0]).all()  # person outlined in green
    assert out[50:90, 50:90].sum() == 0  # forklift has no colour: not drawn, as in TAO
    with pytest.raises(UserInputError, match=r"inference\.color_map\.person: 'grene'"):
        resolve_colors({"person": "grene"}, list(SEVEN))


def test_inference_writes_labels_images_and_json(tmp_path: Path) -> None:
    folder = _inputs(tmp_path)
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_MODEL), 7, (64, 64))
    ckpt = tmp_path / "model.pth"
    cats = {i + 1: n for i, n in enumerate(SEVEN)}
    torch.save(
        {
            "state_dict": to_tao_state_dict(model),
            "tao_model": "rtdetr",
            "epoch": 0,
            "class_map": build_class_map(cats, 7).model_dump(),
        },
        ckpt,
    )
    spec = load_experiment(
        data={
            "results_dir": str(tmp_path / "results"),
            "model": TINY_MODEL,
            "dataset": {
                "num_classes": 7,
                "workers": 0,
                "batch_size": 2,
                "augmentation": {"eval_spatial_size": [64, 64]},
                "infer_data_sources": {"image_dir": [str(folder)]},
            },
            "inference": {
                "checkpoint": str(ckpt),
                "conf_threshold": 0.0,
                "color_map": {"person": "green", "pallet": "purple"},
            },
        }
    )
    summary = run_inference(spec)
    out = tmp_path / "results" / "inference"
    assert summary.status == "SUCCESS" and "3 images" in (summary.message or "")
    for name in ("frame", "Camera_01_rgb_00001", "Camera_01_raw"):
        lines = (out / "labels" / f"{name}.txt").read_text().splitlines()
        assert len(lines) == TINY_MODEL["num_select"]
        assert all(KITTI.match(line) and line.split()[0] in SEVEN for line in lines)
    assert Image.open(out / "images_annotated" / "frame.png").size == (64, 48)
    assert Image.open(out / "images_annotated" / "Camera_01_raw.png").size == (40, 40)
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 3 * TINY_MODEL["num_select"]
    r = records[0]
    assert set(r) == {"image_id", "file_name", "category_id", "class", "bbox", "score"}
    assert r["category_id"] == SEVEN.index(r["class"]) + 1  # back through the class map


def test_classmap_file_names_logit_indices(tmp_path: Path) -> None:
    from rtdetr_trainer.inference.run import class_names

    cm_file = tmp_path / "classmap.txt"
    cm_file.write_text("background\nperson\nforklift\n")
    spec = load_experiment(
        data={"dataset": {"num_classes": 3, "infer_data_sources": {"classmap": str(cm_file)}}}
    )
    names, cm = class_names(spec, None)
    assert names == ["background", "person", "forklift"] and cm is not None
    spec = load_experiment(
        data={
            "dataset": {
                "num_classes": 3,
                "infer_data_sources": {"classmap": str(tmp_path / "missing.txt")},
            }
        }
    )
    with pytest.raises(DataError, match=r"classmap: cannot read .*missing\.txt"):
        class_names(spec, None)
