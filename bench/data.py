"""Training data pipeline throughput with the trainer's own dataset, transforms and collate.

Three stores of the same synthetic warehouse images (``rtdetr_trainer.data.synth``): a JPEG
folder with COCO JSON, per-camera H5 files holding JPEG bytes, and H5 files holding decoded
BGR arrays. For each store and each DataLoader worker count the cell iterates the loader exactly
as the trainer builds it (``TrainDataset`` + ``TrainTransform(640, 640)`` with TAO's
augmentation probabilities, ``TrainSampler``, ``collate``, ``persistent_workers``) and reports
images/s after the first batch (worker start-up is reported separately). It also times decoding
alone (``ImageLoader.load``) so decode and augmentation costs can be told apart.

Run as ``python -m bench.data '<json spec>'`` (keys ``images``, ``width``, ``height``,
``batch``, ``workers`` list, ``size``, ``epochs``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class DataPipelineUnavailableError(RuntimeError):
    """The trainer's data package is not in this checkout."""


def _stores(root: Path, spec: dict[str, Any]) -> dict[str, tuple[Path, Path]]:
    """Generate the three stores; name -> (image_dir, annotation file)."""
    from rtdetr_trainer.data.synth import SynthConfig, generate

    base = {
        "num_images": spec["images"],
        "width": spec["width"],
        "height": spec["height"],
        "splits": (1.0, 0.0, 0.0),
        "max_objects": 8,
    }
    out = {}
    for name, extra in {
        "jpeg-folder": {"format": "coco"},
        "h5-jpeg-bytes": {"format": "h5"},
        "h5-arrays": {"format": "h5", "h5_arrays": True},
    }.items():
        folder = root / name
        paths = generate(folder, SynthConfig(**base, **extra))
        image_dir = folder / "images" if extra["format"] == "coco" else folder
        out[name] = (image_dir, paths["train"])
    return out


def _index(image_dir: Path, ann: Path) -> Any:
    from rtdetr_trainer.data.classmap import build_class_map
    from rtdetr_trainer.data.coco import build_index, categories_of, read_source

    files = read_source(str(image_dir), str(ann), 0, "bench")
    return build_index(files, build_class_map(categories_of(files), 7))


def _loader_rate(index: Any, workers: int, spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    from rtdetr_trainer.data.datasets import TrainDataset, TrainSampler, collate
    from rtdetr_trainer.data.transforms import TrainTransform

    size = spec["size"]
    dataset = TrainDataset(index, TrainTransform(size, size))
    sampler = TrainSampler(index.sources, [None], seed=0)
    loader = DataLoader(
        dataset,
        batch_size=spec["batch"],
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
    )
    torch.manual_seed(0)
    t0 = time.perf_counter()
    first_done = None
    images = 0
    for epoch in range(spec["epochs"]):
        sampler.set_epoch(epoch)
        for batch in loader:
            batch.raise_if_failed()
            if first_done is None:
                first_done = time.perf_counter()
                continue
            images += len(batch.image_ids)
    end = time.perf_counter()
    assert first_done is not None, "the loader produced no batch"
    return {
        "workers": workers,
        "first_batch_s": first_done - t0,
        "images": images,
        "seconds": end - first_done,
        "images_per_s": images / (end - first_done) if end > first_done else float("nan"),
    }


def _decode_rate(index: Any) -> float:
    from rtdetr_trainer.data.images import ImageLoader

    loader = ImageLoader(index)
    loader.load(0)
    n = len(index)
    t0 = time.perf_counter()
    for i in range(n):
        loader.load(i).load()
    return n / (time.perf_counter() - t0)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    try:
        import rtdetr_trainer.data.datasets  # noqa: F401
    except ImportError as e:
        raise DataPipelineUnavailableError(
            f"rtdetr_trainer.data is not in this checkout ({e}); merge the trainer first"
        ) from None
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="rtdetr-bench-data-"))
    try:
        t0 = time.perf_counter()
        stores = _stores(root, spec)
        gen_s = time.perf_counter() - t0
        rows = []
        for name, (image_dir, ann) in stores.items():
            index = _index(image_dir, ann)
            size_mb = sum(p.stat().st_size for p in root.joinpath(name).rglob("*") if p.is_file())
            decode = _decode_rate(index)
            for workers in spec["workers"]:
                row = _loader_rate(index, workers, spec)
                row.update(store=name, decode_images_per_s=decode, store_mib=size_mb / 2**20)
                rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "spec": spec,
        "generate_s": gen_s,
        "rows": rows,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


if __name__ == "__main__":
    try:
        res = run(json.loads(sys.argv[1]))
    except DataPipelineUnavailableError as e:
        res = {"skipped": str(e)}
    sys.stdout.write("BENCH-RESULT " + json.dumps(res) + "\n")
