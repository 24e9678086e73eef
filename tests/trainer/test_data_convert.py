"""``rtdetr dataset convert`` under its earlier names (coco-to-h5, kitti-to-coco) and ``synth``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtdetr_trainer.cli import main
from rtdetr_trainer.data.classmap import build_class_map
from rtdetr_trainer.data.coco import build_index, read_source
from rtdetr_trainer.data.images import ImageLoader
from tests.trainer.trainer_fixtures import synth_dataset, write_image


def _load_all(image_dir: Path, json_file: Path) -> list[np.ndarray]:
    files = read_source(str(image_dir), str(json_file), 0, "src")
    index = build_index(files, build_class_map({i: str(i) for i in range(1, 8)}, 8))
    loader = ImageLoader(index)
    return [np.asarray(loader.load(i)) for i in range(len(index))]


@pytest.mark.parametrize("arrays", [False, True])
def test_coco_to_h5_keeps_pixels_and_annotations(tmp_path: Path, arrays: bool) -> None:
    paths = synth_dataset(tmp_path / "coco", num_images=6, width=64, height=64)
    args = [
        "dataset",
        "convert",
        "coco-to-h5",
        "--image-dir",
        str(tmp_path / "coco" / "images"),
        "--json-file",
        str(paths["train"]),
        "--output",
        str(tmp_path / "h5"),
    ]
    assert main([*args, "--arrays"] if arrays else args) == 0
    out_json = tmp_path / "h5" / "annotations" / "train.json"
    converted = json.loads(out_json.read_text())
    original = json.loads(paths["train"].read_text())
    assert converted["annotations"] == original["annotations"]
    assert converted["images"][0]["file_name"] == "h5://train:train_00000.jpg"  # folder = camera
    before = _load_all(tmp_path / "coco" / "images", paths["train"])
    after = _load_all(tmp_path / "h5", out_json)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a, b)  # bytes stored as-is; arrays as BGR read back as RGB


def test_coco_to_h5_refuses_a_broken_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = synth_dataset(tmp_path / "coco", num_images=4, width=64, height=64)
    (tmp_path / "coco" / "images" / "train" / "train_00000.jpg").unlink()
    code = main(
        [
            "dataset",
            "convert",
            "coco-to-h5",
            "--image-dir",
            str(tmp_path / "coco" / "images"),
            "--json-file",
            str(paths["train"]),
            "--output",
            str(tmp_path / "h5"),
        ]
    )
    assert code == 2 and "train_00000.jpg not found" in capsys.readouterr().err
    assert not (tmp_path / "h5").exists()  # validated before anything is written


def test_kitti_to_coco_split_and_shards(tmp_path: Path) -> None:
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    labels.mkdir()
    for i in range(10):
        write_image(images / f"{i:06d}.png", (80, 60))
        (labels / f"{i:06d}.txt").write_text(
            "Pedestrian 0.00 0 -0.20 10.0 5.0 30.0 55.0 1.8 0.6 0.8 1 2 3 -0.1\n"
            "Car 0.00 0 1.0 40.0 20.0 95.0 50.0 1.5 1.6 4.0 1 2 3 0.1\n"
            "DontCare -1 -1 -10 0 0 5 5 -1 -1 -1 -1000 -1000 -1000 -10\n"
        )
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"pedestrian": "person", "car": "vehicle"}))
    assert (
        main(
            [
                "dataset",
                "convert",
                "kitti-to-coco",
                "--image-dir",
                str(images),
                "--label-dir",
                str(labels),
                "--output",
                str(tmp_path / "out"),
                "--val-split",
                "20",
                "--num-shards",
                "2",
                "--mapping",
                str(mapping),
            ]
        )
        == 0
    )
    shards = sorted((tmp_path / "out").glob("train-shard-*"))
    assert [p.name for p in shards] == [
        "train-shard-00000-of-00002.json",
        "train-shard-00001-of-00002.json",
    ]
    # the extension-less glob TAO's json_file uses loads all shards, validated
    files = read_source(str(images), str(tmp_path / "out" / "train-shard-*"), 0, "s")
    index = build_index(files, build_class_map({1: "person", 2: "vehicle"}, 3))
    assert len(index) == 8 and index.num_annotations == 16  # DontCare unmapped, dropped
    assert index.boxes[0].tolist() == [10.0, 5.0, 30.0, 55.0]
    assert index.boxes[1].tolist() == [40.0, 20.0, 80.0, 50.0]  # x2 95 clipped to the width
    val = json.loads((tmp_path / "out" / "val-shard-00000-of-00002.json").read_text())
    assert val["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "vehicle"}]


def test_synth_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "dataset",
                "synth",
                "--output",
                str(tmp_path),
                "--num-images",
                "5",
                "--image-size",
                "64x48",
                "--format",
                "h5",
                "--cameras",
                "2",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == ["Camera_01.h5", "Camera_02.h5"]
    train = json.loads((tmp_path / "annotations" / "train.json").read_text())
    assert train["images"][0]["width"] == 64 and train["images"][0]["height"] == 48
    assert main(["dataset", "synth", "--output", str(tmp_path), "--image-size", "big"]) == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err
