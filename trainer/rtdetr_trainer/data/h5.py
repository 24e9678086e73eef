"""Per-camera H5 image stores: ``h5://Camera_01:rgb_00000.jpg`` names and how frames are decoded.

Layout (the model card's option 2): ``<image_dir>/Camera_01.h5`` holds a group ``rgb`` with one
dataset
per frame. A COCO ``file_name`` of ``h5://Camera_01:rgb_00000.jpg`` names file ``Camera_01``
(``.h5`` added if missing; resolved inside the source's ``image_dir``, never outside it) and key
``rgb_00000.jpg`` of its ``rgb`` group.

A frame may be stored two ways:

* encoded bytes (a 1-D uint8 dataset, or a scalar opaque/bytes value) of a JPEG/PNG file: decoded
  with Pillow exactly as an image file would be (TAO cannot read these);
* a decoded array: HxW (gray), HxWx3 or HxWx4 uint8. TAO treats 3/4-channel arrays as **BGR(A)**
  and flips them to RGB; we do the same by default, so data that trains correctly in TAO trains
  correctly here. An attribute ``channel_order: RGB`` on the frame's dataset or on the ``rgb``
  group declares RGB(A) arrays instead.

h5py file handles must not cross ``fork()`` (DataLoader workers), so :class:`H5Reader` opens files
lazily in the process that reads them and reopens them after a fork.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rtdetr_trainer.errors import DataError

H5_SCHEME = "h5://"
RGB_GROUP = "rgb"
CHANNEL_ORDER_ATTR = "channel_order"


def is_h5_uri(file_name: str) -> bool:
    return file_name.startswith(H5_SCHEME)


def parse_h5_uri(file_name: str) -> tuple[str, str]:
    """``h5://Camera_01:rgb_00000.jpg`` -> (``Camera_01.h5``, ``rgb_00000.jpg``)."""
    body = file_name[len(H5_SCHEME) :]
    file_part, sep, key = body.partition(":")
    if not sep or not file_part or not key:
        raise DataError(
            f"{file_name!r} is not an H5 image name; expected h5://<file>:<key in the rgb group>"
        )
    if not file_part.endswith((".h5", ".hdf5")):
        file_part += ".h5"
    return file_part, key


def resolve_h5_uri(file_name: str, image_dir: str | Path) -> tuple[Path, str]:
    """H5 file path and frame key for an ``h5://`` name under ``image_dir``.

    The file part must stay inside ``image_dir``: an absolute path or a ``..`` is refused.
    """
    file_part, key = parse_h5_uri(file_name)
    path = Path(file_part)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(
            f"{file_name!r}: the H5 file must be a path inside image_dir (no '..', not absolute)"
        )
    return Path(image_dir) / path, key


def _attr_text(value: object) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode(errors="replace")
    return str(value)


def declared_rgb(dataset: h5py.Dataset) -> bool:
    """Whether the frame (or its ``rgb`` group) declares ``channel_order: RGB``."""
    for node in (dataset, dataset.parent):
        if CHANNEL_ORDER_ATTR in node.attrs:
            order = _attr_text(node.attrs[CHANNEL_ORDER_ATTR]).strip().upper()
            if order in ("RGB", "RGBA"):
                return True
            if order in ("BGR", "BGRA"):
                return False
            raise DataError(
                f"{dataset.file.filename}:{dataset.name}: {CHANNEL_ORDER_ATTR} must be RGB or BGR, "
                f"got {order!r}"
            )
    return False


def decode_frame(value: np.ndarray | bytes, *, rgb: bool, label: str) -> Image.Image:
    """Turn a stored frame (encoded bytes or an array) into an RGB PIL image.

    Args:
        value: the dataset's content.
        rgb: arrays are RGB(A) rather than TAO's default BGR(A).
        label: ``file:key`` for error messages.
    """
    if isinstance(value, bytes | np.void):
        return _decode_bytes(bytes(value), label)
    arr = np.asarray(value)
    if arr.dtype.kind in ("S", "O") and arr.ndim == 0:
        return _decode_bytes(bytes(arr.item()), label)
    if arr.ndim == 1 and arr.dtype == np.uint8:
        return _decode_bytes(arr.tobytes(), label)
    if arr.dtype != np.uint8:
        raise DataError(f"{label}: frame arrays must be uint8, got {arr.dtype} {arr.shape}")
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, :3]
        if not rgb:
            arr = arr[:, :, ::-1]
        return Image.fromarray(np.ascontiguousarray(arr), "RGB")
    raise DataError(
        f"{label}: unsupported frame shape {arr.shape}; expected encoded JPEG/PNG bytes (1-D "
        "uint8) or an HxW, HxWx3 or HxWx4 uint8 array"
    )


def _decode_bytes(data: bytes, label: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{label}: not a readable JPEG/PNG ({type(e).__name__}: {e})") from None
    img = ImageOps.exif_transpose(img) or img
    return img.convert("RGB") if img.mode != "RGB" else img


def frame_size(dataset: h5py.Dataset, label: str) -> tuple[int, int]:
    """(width, height) of a stored frame, reading only what is needed."""
    if dataset.ndim in (2, 3) and dataset.dtype == np.uint8:
        return int(dataset.shape[1]), int(dataset.shape[0])
    img = decode_frame(dataset[()], rgb=True, label=label)
    return img.size


class H5Reader:
    """Reads frames from H5 files, one lazily opened handle per file and per process."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._files: dict[str, h5py.File] = {}

    def _file(self, path: str) -> h5py.File:
        if self._pid != os.getpid():  # forked into a DataLoader worker: parent handles are unsafe
            self._files = {}
            self._pid = os.getpid()
        f = self._files.get(path)
        if f is None:
            try:
                f = h5py.File(path, "r")
            except FileNotFoundError:
                raise DataError(f"{path}: H5 file not found") from None
            except OSError as e:
                raise DataError(f"{path}: not a readable H5 file ({e})") from None
            self._files[path] = f
        return f

    def dataset(self, path: str, key: str) -> h5py.Dataset:
        f = self._file(path)
        group = f.get(RGB_GROUP)
        if not isinstance(group, h5py.Group):
            raise DataError(f"{path}: has no '{RGB_GROUP}' group")
        ds = group.get(key)
        if not isinstance(ds, h5py.Dataset):
            raise DataError(f"{path}: key {key!r} not found in its '{RGB_GROUP}' group")
        return ds

    def read(self, path: str, key: str) -> Image.Image:
        ds = self.dataset(path, key)
        label = f"{path}:{key}"
        try:
            value = ds[()]
        except OSError as e:
            raise DataError(f"{label}: cannot read the frame ({e})") from None
        return decode_frame(value, rgb=declared_rgb(ds), label=label)

    def keys(self, path: str) -> list[str]:
        group = self._file(path).get(RGB_GROUP)
        if not isinstance(group, h5py.Group):
            raise DataError(f"{path}: has no '{RGB_GROUP}' group")
        return sorted(group.keys())

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = {}

    def __getstate__(self) -> dict[str, object]:
        return {}  # handles never travel to another process

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]
