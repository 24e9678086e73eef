"""Decode one indexed image (a file or an H5 frame) into an RGB PIL image, naming it on failure.

Files go through :func:`rtdetr_serving.preprocess.load_rgb`, the decoder serving uses, so EXIF
orientation and mode conversion are identical in training, evaluation and serving. A decoded size
that differs from the annotation file's width/height would misplace every box, so it is an error.
"""

from __future__ import annotations

from PIL import Image

from rtdetr_serving.preprocess import NotAnImageError, load_rgb
from rtdetr_trainer.data.h5 import H5Reader
from rtdetr_trainer.data.index import DetectionIndex
from rtdetr_trainer.errors import DataError


class ImageLoader:
    """Loads images of a :class:`DetectionIndex`; owns the per-process H5 handles."""

    def __init__(self, index: DetectionIndex, *, check_size: bool = True) -> None:
        self.index = index
        self.check_size = check_size
        self.h5 = H5Reader()

    def load(self, i: int) -> Image.Image:
        path, key = self.index.path(i), self.index.h5_key(i)
        if key:
            img = self.h5.read(path, key)
        else:
            try:
                img = load_rgb(path)
            except FileNotFoundError:
                raise DataError(f"{path}: image file not found") from None
            except NotAnImageError as e:
                raise DataError(f"{path}: corrupt or unreadable image ({e})") from None
            except OSError as e:
                raise DataError(f"{path}: cannot read the image ({e})") from None
        if self.check_size:
            expected = (int(self.index.widths[i]), int(self.index.heights[i]))
            if img.size != expected:
                raise DataError(
                    f"{self.index.display_name(i)}: decoded size {img.size[0]}x{img.size[1]} "
                    f"differs from the annotation file's {expected[0]}x{expected[1]} "
                    f"(image id {int(self.index.image_ids[i])}); the boxes would be misplaced"
                )
        return img
