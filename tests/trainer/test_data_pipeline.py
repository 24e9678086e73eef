"""Serialized index, train transforms, the epoch sampler and the synthetic generator."""

from __future__ import annotations

import gc
import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtdetr_spec import load_experiment
from rtdetr_trainer.data.datasets import EvalDataset, TrainDataset, TrainSampler, collate
from rtdetr_trainer.data.index import DetectionIndex, IndexBuilder
from rtdetr_trainer.data.pipeline import prepare_train_data
from rtdetr_trainer.data.synth import SynthConfig, generate
from rtdetr_trainer.data.transforms import (
    Sample,
    TrainTransform,
    hflip,
    iou_crop,
    resize,
    sanitize,
    zoom_out,
)
from tests.trainer.trainer_fixtures import synth_dataset


def _big_index(n: int = 5000) -> DetectionIndex:
    b = IndexBuilder()
    for i in range(n):
        b.add_image(i + 1, 640, 480, i % 2, f"/data/images/img_{i:06d}.jpg", "")
        for k in range(3):
            b.add_annotation((1.0 + k, 2.0, 30.0, 40.0), k, k + 1, 3 * i + k, 0, 100.0)
    return b.build()


def test_index_has_no_per_image_python_objects() -> None:
    index = _big_index()
    for name, arr in index.arrays().items():
        assert isinstance(arr, np.ndarray) and arr.dtype != object, name
    # Every object reachable from the index is one of a few arrays, never one per image.
    reachable = gc.get_referents(*[getattr(index, f) for f in ("paths", "h5_keys")])
    assert len(gc.get_referents(index)) < 40 and len(reachable) < 40


def test_serialized_index_memory_maps_and_pickles_as_a_path(tmp_path: Path) -> None:
    index = _big_index()
    folder = index.save(tmp_path / "idx")
    loaded = DetectionIndex.load(folder)
    assert isinstance(loaded.boxes, np.memmap) and isinstance(loaded.paths.data, np.memmap)
    assert loaded.path(4321) == "/data/images/img_004321.jpg"
    assert loaded.boxes[loaded.annotation_rows(7)].tolist() == index.boxes[21:24].tolist()
    blob = pickle.dumps(loaded)  # what a spawned DataLoader worker receives
    assert len(blob) < 2048, len(blob)
    assert pickle.loads(blob).image_ids[-1] == 5000
    assert len(pickle.dumps(index)) > 100_000  # the in-memory ("default") index is the data


def _box_image() -> Sample:
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (120, 20, 180, 80))
    return Sample(img, np.array([[120, 20, 180, 80]], np.float32), np.array([3]))


def _box_is_white(s: Sample) -> None:
    arr = np.asarray(s.image.convert("L"), dtype=np.float32)
    for x1, y1, x2, y2 in s.boxes.round().astype(int):
        inside = arr[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
        assert inside.size and inside.mean() > 200, (x1, y1, x2, y2)


@pytest.mark.parametrize("seed", range(12))
def test_geometric_transforms_keep_boxes_on_their_pixels(seed: int) -> None:
    rng = random.Random(seed)
    s = _box_image()
    s = zoom_out(s, rng, p=1.0)
    _box_is_white(s)
    s = sanitize(iou_crop(s, rng))
    if len(s.boxes):
        _box_is_white(s)
    s = hflip(s, rng, p=1.0)
    _box_is_white(s)
    s = resize(s, 64, 96)
    assert s.image.size == (96, 64)
    assert (s.boxes[:, 2] <= 96).all() and (s.boxes[:, 3] <= 64).all()


def test_train_transform_output_contract() -> None:
    s = _box_image()
    t = TrainTransform(64, 96, rng=random.Random(0))
    img, boxes, labels = t(s.image, s.boxes, s.labels)
    assert img.shape == (3, 64, 96) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1
    assert boxes.shape[1] == 4 and ((boxes >= 0) & (boxes <= 1)).all()
    assert labels.dtype == np.int64


def test_sampler_sample_size_ranks_and_epochs() -> None:
    sources = np.array([0] * 50 + [1] * 10)
    samplers = [TrainSampler(sources, [20, None], seed=7, rank=r, world_size=2) for r in (0, 1)]
    first = [list(s) for s in samplers]
    assert len(first[0]) == len(first[1]) == 15
    assert not set(first[0]) & set(first[1])  # 30 draws split without overlap
    union = set(first[0]) | set(first[1])
    assert len([i for i in union if i < 50]) == 20 and set(range(50, 60)) <= union
    for s in samplers:
        s.set_epoch(1)
    second = set(samplers[0]) | set(samplers[1])
    assert second != union  # a fresh subset every epoch
    again = TrainSampler(sources, [20, None], seed=7, rank=0, world_size=2)
    assert list(again) == first[0]  # deterministic for a seed and epoch


def test_synth_is_deterministic_and_named_as_the_model_card(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", SynthConfig(num_images=6, width=64, height=64, seed=5))
    b = generate(tmp_path / "b", SynthConfig(num_images=6, width=64, height=64, seed=5))
    assert a["train"].read_text() == b["train"].read_text()
    for name in ("train_00000.jpg", "train_00001.jpg"):
        pa = tmp_path / "a" / "images" / "train" / name
        assert pa.read_bytes() == (tmp_path / "b" / "images" / "train" / name).read_bytes()
    data = json.loads(a["train"].read_text())
    assert [c["id"] for c in data["categories"]] == list(range(1, 8))
    assert data["categories"][0]["name"] == "person" and data["categories"][6]["name"] == "pallet"


@pytest.mark.parametrize("arrays", [False, True])
def test_synth_h5_trains_through_the_pipeline(tmp_path: Path, arrays: bool) -> None:
    paths = synth_dataset(tmp_path, format="h5", h5_arrays=arrays, num_images=8)
    spec = load_experiment(
        data={
            "dataset": {
                "num_classes": 7,
                "augmentation": {"train_spatial_size": [64, 64], "eval_spatial_size": [64, 64]},
            }
        },
        overrides=[
            f"dataset.train_data_sources.image_dir={tmp_path}",
            f"dataset.train_data_sources.json_file={paths['train']}",
            f"dataset.val_data_sources.image_dir={tmp_path}",
            f"dataset.val_data_sources.json_file={paths['val']}",
        ],
    )
    data = prepare_train_data(spec)
    assert data.class_map.names_by_index()[0] == "person"
    ds = TrainDataset(data.train, TrainTransform(64, 64))
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch.failure is None and batch.images.shape == (len(ds), 3, 64, 64)
    ev = EvalDataset(data.val, 64, 64)
    item = ev[0]
    assert item.orig_size == (96, 96) and tuple(item.image.shape) == (3, 64, 64)
