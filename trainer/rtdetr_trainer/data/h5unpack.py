"""``rtdetr dataset convert h52coco``: per-camera H5 frames -> a plain COCO image folder.

The inverse of ``coco2h5``. Every frame a COCO file names as ``h5://<Camera>:<key>`` becomes the
image file ``<output>/<Camera>/<key>`` and the annotation file is written to
``<output>/annotations/<json name>`` with those relative names (``file_name: Camera_01/0001.jpg``,
so ``image_dir: <output>`` reads it); every other field is kept as it was.

* Encoded frames (JPEG/PNG bytes) are written byte for byte: ``coco2h5`` then ``h52coco`` gives
  back the original files.
* Decoded arrays (HxW gray, HxWx3, HxWx4 uint8; BGR(A) unless ``channel_order: RGB`` on the
  frame or its ``rgb`` group, as TAO reads them) are encoded as PNG, losslessly, in RGB(A)
  order. A PNG under a ``.jpg`` name would mislead every tool that trusts extensions, so the
  key's image extension becomes ``.png`` (``rgb_00000.jpg`` -> ``Camera_01/rgb_00000.png``; a key
  without one gets ``.png`` appended). Two frames that would end up with one name are an error.

The COCO file is validated first (every H5 file and key must exist; a missing one is an error
naming the image id and its name), and every output name and frame type is checked before
anything is written. Each image is written atomically (temp file + rename) and the annotation
file last, so a run that fails half-way (a frame whose bytes are not an image) leaves image
files but no annotation file: never a set that looks complete. An output that would replace the
source annotation file or an H5 file is refused, and so is one that already holds any file to be
written, unless ``overwrite`` (:mod:`rtdetr_trainer.data.outputs`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import h5py
import numpy as np
from PIL import Image, UnidentifiedImageError

from rtdetr_spec.artifacts import atomic_write_bytes, atomic_write_text
from rtdetr_spec.cli_help import progress
from rtdetr_trainer.data.h5 import RGB_GROUP, declared_rgb, is_h5_uri, resolve_h5_uri
from rtdetr_trainer.data.h5pack import read_one_source
from rtdetr_trainer.data.outputs import check_output_folder, check_outputs
from rtdetr_trainer.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class UnpackSummary:
    """What ``h52coco`` wrote."""

    json_file: Path
    images: int = 0
    #: frames written byte for byte (encoded JPEG/PNG).
    encoded: int = 0
    #: frames stored as arrays, written as PNG.
    png_from_arrays: int = 0
    #: of those, frames whose key's extension was changed to ``.png``.
    renamed: int = 0

    def report(self) -> str:
        return "\n".join(
            [
                f"h52coco: {self.images} image(s): {self.encoded} frame(s) written as stored, "
                f"{self.png_from_arrays} array frame(s) encoded as PNG "
                f"({self.renamed} renamed to .png)",
                f"  wrote {self.json_file}",
            ]
        )


@dataclass(frozen=True)
class _Frame:
    h5_file: Path
    key: str
    #: the image's path under the output folder, before any ``.png`` rename.
    rel: PurePosixPath


def _relative_name(h5_file: Path, image_dir: Path, key: str, where: str) -> PurePosixPath:
    """``<Camera>/<key>``: the H5 file's path under ``image_dir`` without ``.h5``, then the key."""
    try:
        folder = PurePosixPath(h5_file.relative_to(image_dir).with_suffix("").as_posix())
    except ValueError:  # an absolute H5 path elsewhere: its stem alone
        folder = PurePosixPath(h5_file.stem)
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or any(p in ("", ".", "..") for p in folder.parts):
        raise DataError(f"{where}: {key!r} cannot be turned into a file name inside --output")
    return folder.joinpath(*parts)


def _png_name(rel: PurePosixPath) -> PurePosixPath:
    if rel.suffix.lower() in IMAGE_SUFFIXES:
        return rel.with_suffix(".png")
    return rel.with_name(rel.name + ".png")


def _encode_array(arr: np.ndarray, rgb: bool, label: str) -> bytes:
    """A decoded frame as lossless PNG bytes, channels put in RGB(A) order."""
    if arr.dtype != np.uint8:
        raise DataError(f"{label}: frame arrays must be uint8, got {arr.dtype} {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        if not rgb:
            arr = np.concatenate([arr[:, :, 2::-1], arr[:, :, 3:]], axis=2)
        mode = "RGB" if arr.shape[2] == 3 else "RGBA"
    elif arr.ndim == 2:
        mode = "L"
    else:
        raise DataError(
            f"{label}: unsupported frame shape {arr.shape}; expected encoded JPEG/PNG bytes (1-D "
            "uint8) or an HxW, HxWx3 or HxWx4 uint8 array"
        )
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), mode).save(buf, format="PNG")
    return buf.getvalue()


def _encoded_bytes(value: Any) -> bytes | None:
    """The frame's bytes if it is stored encoded, else None (a decoded array)."""
    if isinstance(value, bytes | np.void):
        return bytes(value)
    arr = np.asarray(value)
    if arr.dtype.kind in ("S", "O") and arr.ndim == 0:
        return bytes(arr.item())
    if arr.ndim == 1 and arr.dtype == np.uint8:
        return arr.tobytes()
    return None


def _plan(data: dict[str, Any], image_dir: Path, json_file: Path) -> dict[_Frame, list[int]]:
    """Every distinct frame and the image ids that name it; refuses names it cannot write."""
    frames: dict[_Frame, list[int]] = {}
    problems: list[str] = []
    for img in data["images"]:
        name, where = img["file_name"], f"{json_file}: image id {img['id']} ({img['file_name']})"
        if not is_h5_uri(name):
            problems.append(f"{where}: not an h5:// frame name")
            continue
        try:
            h5_file, key = resolve_h5_uri(name, image_dir)
            rel = _relative_name(h5_file, image_dir, key, where)
        except DataError as e:
            problems.append(str(e) if str(e).startswith(str(json_file)) else f"{where}: {e}")
            continue
        frames.setdefault(_Frame(h5_file, key, rel), []).append(img["id"])
    if problems:
        raise DataError(problems[:20], total=len(problems))
    return frames


def _output_names(
    frames: dict[_Frame, list[int]],
) -> tuple[dict[Path, list[_Frame]], dict[_Frame, PurePosixPath]]:
    """Frames grouped by H5 file, and each frame's output name (arrays renamed to ``.png``).

    Reads only the datasets' shapes and types, so every name clash and unsupported frame is
    found before the first image is written.
    """
    by_file: dict[Path, list[_Frame]] = {}
    for frame in frames:
        by_file.setdefault(frame.h5_file, []).append(frame)
    names: dict[_Frame, PurePosixPath] = {}
    owner: dict[PurePosixPath, _Frame] = {}
    problems: list[str] = []
    for h5_path, file_frames in by_file.items():
        with h5py.File(h5_path, "r") as f:
            for frame in file_frames:
                ds = f[RGB_GROUP][frame.key]
                label = f"{h5_path}:{frame.key} (image id {frames[frame][0]})"
                is_array = ds.ndim in (2, 3)
                if ds.ndim > 3 or (is_array and ds.dtype != np.uint8):
                    problems.append(
                        f"{label}: unsupported frame {ds.dtype} {ds.shape}; expected encoded "
                        "JPEG/PNG bytes (1-D uint8) or an HxW, HxWx3 or HxWx4 uint8 array"
                    )
                    continue
                rel = _png_name(frame.rel) if is_array else frame.rel
                if rel in owner:
                    other = owner[rel]
                    problems.append(
                        f"{label}: would be written as {rel}, as {other.h5_file}:{other.key} "
                        "is; rename one of the keys"
                    )
                    continue
                owner[rel] = frame
                names[frame] = rel
    if problems:
        raise DataError(problems[:20], total=len(problems))
    return by_file, names


def h5_to_coco(
    image_dir: str | Path, json_file: str | Path, output: str | Path, *, overwrite: bool = False
) -> UnpackSummary:
    """Unpack the frames a COCO file names into ``output``; the annotation file comes last."""
    src_dir, out = Path(image_dir), check_output_folder(output)
    cf = read_one_source(src_dir, json_file, "--image-dir/--json-file")
    data: dict[str, Any] = json.loads(json.dumps(cf.data))
    frames = _plan(data, src_dir, Path(json_file))
    by_file, names = _output_names(frames)
    summary = UnpackSummary(json_file=out / "annotations" / Path(json_file).name)
    targets = [summary.json_file, *(out / rel for rel in names.values())]
    check_outputs(out, targets, [json_file, *by_file], overwrite=overwrite)
    for h5_path, file_frames in by_file.items():
        with h5py.File(h5_path, "r") as f:
            for frame in progress(file_frames, desc=Path(h5_path).name, unit="frame"):
                ds = f[RGB_GROUP][frame.key]
                label = f"{h5_path}:{frame.key} (image id {frames[frame][0]})"
                value = ds[()]
                data_bytes = _encoded_bytes(value)
                if data_bytes is None:
                    data_bytes = _encode_array(np.asarray(value), declared_rgb(ds), label)
                    summary.png_from_arrays += 1
                    summary.renamed += names[frame] != frame.rel
                else:
                    _check_encoded(data_bytes, label)
                    summary.encoded += 1
                atomic_write_bytes(out / names[frame], data_bytes)
    names_by_id = {i: names[fr].as_posix() for fr, ids in frames.items() for i in ids}
    for img in data["images"]:
        img["file_name"] = names_by_id[img["id"]]
    summary.images = len(data["images"])
    atomic_write_text(summary.json_file, json.dumps(data))
    return summary


def _check_encoded(data: bytes, label: str) -> None:
    """Refuse bytes no image reader would open, rather than writing a broken file.

    ``verify`` checks the container (PNG chunk CRCs), ``load`` decodes every pixel (a JPEG cut
    short after its header passes the first and fails the second).
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{label}: not a readable JPEG/PNG ({type(e).__name__}: {e})") from None
