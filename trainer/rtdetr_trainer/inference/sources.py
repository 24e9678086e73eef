"""What ``rtdetr inference`` runs on: image folders and per-camera H5 files, in a stable order.

Each ``dataset.infer_data_sources.image_dir`` entry is a folder; every image file in it (jpg,
jpeg, png, bmp, tif, tiff, webp; not recursive) and every key of the ``rgb`` group of every
``*.h5`` file in it is one input, as TAO's ``ODPredictDataset`` lists them. Output names are the
file name, or ``<h5 stem>_<key>`` for H5 frames (``.png`` added when the key has no image
extension); with several folders each gets its own sub-folder so names cannot collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from rtdetr_serving.preprocess import NotAnImageError, load_rgb, to_model_input
from rtdetr_trainer.data.datasets import Item, LoadFailure
from rtdetr_trainer.data.h5 import H5Reader
from rtdetr_trainer.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class InferInput:
    path: str  # image file, or H5 file
    key: str  # frame key in the H5 rgb group, "" for image files
    output_name: str  # relative output path (folder prefix + file name)

    @property
    def display(self) -> str:
        return f"{self.path}:{self.key}" if self.key else self.path


def list_inputs(image_dirs: list[str]) -> list[InferInput]:
    if not image_dirs:
        raise DataError("dataset.infer_data_sources.image_dir: no folder given")
    reader = H5Reader()
    inputs: list[InferInput] = []
    used_prefixes: set[str] = set()
    try:
        for i, folder in enumerate(image_dirs):
            root = Path(folder)
            if not root.is_dir():
                raise DataError(
                    f"dataset.infer_data_sources.image_dir.{i}: {folder} is not a folder"
                )
            prefix = ""
            if len(image_dirs) > 1:
                prefix = root.name or f"source{i}"
                if prefix in used_prefixes:
                    prefix = f"{i}_{prefix}"
                used_prefixes.add(prefix)
                prefix += "/"
            for p in sorted(root.iterdir()):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    inputs.append(InferInput(str(p), "", prefix + p.name))
                elif p.is_file() and p.suffix.lower() in (".h5", ".hdf5"):
                    for key in reader.keys(str(p)):
                        name = f"{p.stem}_{key}"
                        if Path(key).suffix.lower() not in IMAGE_SUFFIXES:
                            name += ".png"
                        inputs.append(InferInput(str(p), key, prefix + name))
    finally:
        reader.close()
    if not inputs:
        raise DataError(
            "dataset.infer_data_sources.image_dir: no images or H5 files in "
            + ", ".join(image_dirs)
        )
    return inputs


class InferLoader:
    """Decodes an :class:`InferInput` (owning per-process H5 handles)."""

    def __init__(self) -> None:
        self.h5 = H5Reader()

    def load(self, item: InferInput) -> Image.Image:
        if item.key:
            return self.h5.read(item.path, item.key)
        try:
            return load_rgb(item.path)
        except (NotAnImageError, OSError) as e:
            raise DataError(f"{item.path}: corrupt or unreadable image ({e})") from None


class InferDataset(Dataset):
    def __init__(self, inputs: list[InferInput], height: int, width: int) -> None:
        self.inputs, self.height, self.width = inputs, height, width
        self.loader = InferLoader()

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> Item | LoadFailure:
        try:
            img = self.loader.load(self.inputs[i])
        except DataError as e:
            return LoadFailure(str(e))
        arr = to_model_input(img, self.height, self.width)
        return Item(torch.from_numpy(arr), {}, i, img.size)
