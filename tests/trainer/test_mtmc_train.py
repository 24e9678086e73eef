"""A converted MTMC scene trains with ``rtdetr train`` and evaluates with ``rtdetr evaluate``,
through the real executables, with the output folder as ``image_dir`` as the docs say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rtdetr_trainer.data.mtmc.synth import SceneConfig, write_scene
from tests.trainer.trainer_fixtures import SEVEN, tiny_spec_dict

pytestmark = pytest.mark.slow


def _rtdetr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rtdetr_trainer.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_converted_scene_trains_and_evaluates(tmp_path: Path) -> None:
    scene = write_scene(
        tmp_path / "Warehouse_901",
        SceneConfig(cameras=3, frames=24, width=192, height=112, objects=7, seed=5),
    )
    out = tmp_path / "converted"
    conv = _rtdetr(
        "dataset", "convert", "mtmc", "--scene", str(scene), "--output", str(out),
        "--frame-stride", "2", "--split", "camera", "--val", "Camera_01", "--test", "Camera_02",
        "--no-progress",
    )  # fmt: skip
    assert conv.returncode == 0, conv.stderr
    paths = {s: out / "annotations" / f"{s}.json" for s in ("train", "val", "test")}
    spec = tiny_spec_dict(tmp_path, paths, size=96)
    assert spec["dataset"]["train_data_sources"][0]["image_dir"] == str(out)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    train = _rtdetr("train", "-e", str(spec_file), "train.num_epochs=2")
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = tmp_path / "results" / "train" / "model_epoch_001.pth"
    assert ckpt.is_file()
    ev = _rtdetr("evaluate", "-e", str(spec_file), f"evaluate.checkpoint={ckpt}")
    assert ev.returncode == 0, ev.stderr[-3000:]
    metrics = json.loads((tmp_path / "results" / "evaluate" / "metrics.json").read_text())
    assert set(metrics["per_class_AP50"]) == set(SEVEN)
    test_images = len(json.loads(paths["test"].read_text())["images"])
    assert test_images == 12
    assert metrics["num_images"] == test_images
