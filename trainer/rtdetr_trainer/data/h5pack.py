"""``rtdetr dataset convert coco2h5``: a COCO image folder -> per-camera H5 files (option 2).

Images are grouped into one ``<camera>.h5`` per sub-folder of their ``file_name``
(``Camera_01/0001.jpg`` -> ``Camera_01.h5``, key ``0001.jpg``; files at the top level go to
``Camera_01.h5``), or all into one file (``camera="single"``, keys keep the whole relative path
with ``/`` turned into ``_``). Frames are stored as the original encoded bytes (exact, compact,
readable here) or, with ``arrays``, as decoded BGR uint8 arrays (HxWx3) with
``channel_order: BGR`` on the ``rgb`` group, the one form TAO itself can read. The annotation
file is rewritten with ``h5://<camera>:<key>`` names and written to
``<output>/annotations/<json name>``.

Nothing half-done ever looks complete: the whole source is validated (and every frame name
worked out, so collisions are caught) before anything is written; each H5 file is written under
a temporary name in ``output`` and renamed only when all its frames are in; the annotation file,
the one thing a spec points at, is written last, atomically. A failure removes the temporary
files and leaves any earlier output untouched. An output that would replace the source annotation
file or an image is refused, and so is one that already holds any of the files to be written,
unless ``overwrite`` (:mod:`rtdetr_trainer.data.outputs`).

Every image is decoded before it is stored (``verify``, the default), with the decoder training
uses (EXIF orientation applied), and its size compared with the annotation file's width/height:
a corrupt file or a size that would misplace the boxes is refused here, naming the image id,
rather than at the first epoch that samples it. ``verify=False`` skips the decode for speed
(bytes are then only checked to be an image whose header gives the declared size).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image, UnidentifiedImageError

from rtdetr_serving.preprocess import NotAnImageError, load_rgb
from rtdetr_spec.artifacts import atomic_write_text, commit_file
from rtdetr_spec.cli_help import progress
from rtdetr_trainer.data.classmap import build_class_map
from rtdetr_trainer.data.coco import CocoFile, build_index, categories_of, read_source
from rtdetr_trainer.data.h5 import CHANNEL_ORDER_ATTR, RGB_GROUP, is_h5_uri
from rtdetr_trainer.data.outputs import check_output_folder, check_outputs
from rtdetr_trainer.errors import DataError

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
DEFAULT_CAMERA = "Camera_01"


@dataclass
class PackSummary:
    """What ``coco2h5`` wrote: frames per H5 file and the rewritten annotation file."""

    json_file: Path
    images: int = 0
    annotations: int = 0
    frames_per_file: dict[str, int] = field(default_factory=dict)
    arrays: bool = False

    def report(self) -> str:
        kind = "BGR arrays" if self.arrays else "encoded bytes"
        lines = [
            f"coco2h5: {self.images} image(s) as {kind} in {len(self.frames_per_file)} H5 "
            f"file(s), {self.annotations} annotation(s)"
        ]
        lines += [f"  {name}: {n} frame(s)" for name, n in sorted(self.frames_per_file.items())]
        lines.append(f"  wrote {self.json_file}")
        return "\n".join(lines)


def read_one_source(image_dir: str | Path, json_file: str | Path, flag: str) -> CocoFile:
    """Read and fully validate one COCO file (every image must exist; boxes must fit)."""
    files = read_source(str(image_dir), str(json_file), 0, flag)
    if len(files) != 1:
        raise DataError(
            f"--json-file must name one annotation file, {json_file} matches {len(files)}"
        )
    cats = categories_of(files)
    build_index(files, build_class_map(cats, max(cats) + 1))
    return files[0]


def frame_name(file_name: str, image_dir: Path, camera: str) -> tuple[str, str]:
    """(camera, key) for an image file name; see the module docstring for the rule."""
    rel = Path(file_name)
    if rel.is_absolute():
        try:
            rel = rel.relative_to(image_dir.resolve())
        except ValueError:
            rel = Path(rel.parent.name) / rel.name if rel.parent.name else Path(rel.name)
    parts = rel.parts
    if camera == "single" or len(parts) == 1:
        cam, key_parts = DEFAULT_CAMERA, parts
    else:
        cam, key_parts = parts[0], parts[1:]
    return SAFE.sub("_", cam), SAFE.sub("_", "_".join(key_parts))


def _plan(cf: CocoFile, camera: str) -> list[tuple[dict[str, Any], str, str, Path]]:
    """(image entry, camera, key, source path) for every image; refuses name collisions."""
    plan = []
    seen: dict[tuple[str, str], Any] = {}
    problems = []
    for img in cf.data["images"]:
        name = img["file_name"]
        if is_h5_uri(name):
            problems.append(f"image id {img['id']}: {name} is already an H5 frame")
            continue
        cam, key = frame_name(name, cf.image_dir, camera)
        if (cam, key) in seen:
            problems.append(
                f"image id {img['id']} ({name}): frame {cam}:{key} is also image id "
                f"{seen[cam, key]}'s name after replacing unsafe characters"
            )
            continue
        seen[cam, key] = img["id"]
        src = Path(name) if Path(name).is_absolute() else cf.image_dir / name
        plan.append((img, cam, key, src))
    if problems:
        raise DataError(problems[:20], total=len(problems))
    return plan


def coco_to_h5(
    image_dir: str | Path,
    json_file: str | Path,
    output: str | Path,
    *,
    arrays: bool = False,
    camera: str = "folder",
    verify: bool = True,
    overwrite: bool = False,
) -> PackSummary:
    """Write ``<output>/<camera>.h5`` files, then ``<output>/annotations/<json name>``."""
    if camera not in ("folder", "single"):
        raise DataError(f"--camera must be 'folder' or 'single', got {camera!r}")
    out = check_output_folder(output)
    cf = read_one_source(image_dir, json_file, "--image-dir/--json-file")
    plan = _plan(cf, camera)
    data: dict[str, Any] = json.loads(json.dumps(cf.data))  # a copy to rewrite
    images_by_id = {img["id"]: img for img in data["images"]}
    summary = PackSummary(json_file=out / "annotations" / Path(json_file).name, arrays=arrays)
    targets = [summary.json_file, *sorted({out / f"{cam}.h5" for _, cam, _, _ in plan})]
    check_outputs(out, targets, [json_file, *(src for *_, src in plan)], overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    temps: dict[str, tuple[Path, h5py.File]] = {}
    try:
        for img, cam, key, src in progress(plan, desc="coco2h5", unit="image"):
            if cam not in temps:
                fd, tmp = tempfile.mkstemp(prefix=f".{cam}.h5.", suffix=".tmp", dir=out)
                os.close(fd)
                f = h5py.File(tmp, "w")
                temps[cam] = (Path(tmp), f)
                group = f.create_group(RGB_GROUP)
                if arrays:
                    group.attrs[CHANNEL_ORDER_ATTR] = "BGR"
            group = temps[cam][1][RGB_GROUP]
            where = f"image id {img['id']} ({img['file_name']})"
            raw = _read(src, where)
            decoded = _decode(raw, src, where) if arrays or verify else None
            size = decoded.size if decoded is not None else _header_size(raw, src, where)
            _check_size(img, *size, where)
            if decoded is not None and arrays:
                rgb = np.asarray(decoded)
                group.create_dataset(key, data=np.ascontiguousarray(rgb[:, :, ::-1]))
            else:
                group.create_dataset(key, data=np.frombuffer(raw, np.uint8))
            images_by_id[img["id"]]["file_name"] = f"h5://{cam}:{key}"
            summary.frames_per_file[f"{cam}.h5"] = summary.frames_per_file.get(f"{cam}.h5", 0) + 1
        for cam, (tmp, f) in temps.items():
            f.close()
            commit_file(tmp, out / f"{cam}.h5")  # also not mkstemp's 0600: others read it
    finally:
        for tmp, f in temps.values():
            if f.id.valid:
                f.close()
            tmp.unlink(missing_ok=True)
    atomic_write_text(summary.json_file, json.dumps(data))
    summary.images = len(data["images"])
    summary.annotations = len(data["annotations"])
    return summary


def _read(src: Path, where: str) -> bytes:
    try:
        return src.read_bytes()
    except OSError as e:
        raise DataError(f"{where}: cannot read {src} ({e.strerror or e})") from None


def _decode(raw: bytes, src: Path, where: str) -> Image.Image:
    """Encoded bytes as an RGB image, oriented as training sees the file."""
    try:
        return load_rgb(raw, name=str(src))
    except NotAnImageError as e:
        raise DataError(f"{where}: {src} is not a readable image ({e})") from None


def _header_size(raw: bytes, src: Path, where: str) -> tuple[int, int]:
    """Width and height from the header alone, EXIF rotations (orientation 5-8) swapping them."""
    try:
        with Image.open(io.BytesIO(raw)) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"{where}: {src} is not a readable image ({type(e).__name__}: {e})"
        ) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _check_size(img: dict[str, Any], width: int, height: int, where: str) -> None:
    """The annotation file's width/height, where given, must be the image's."""
    want = (img.get("width"), img.get("height"))
    if want != (None, None) and want != (width, height):
        raise DataError(
            f"{where}: the image is {width}x{height} but the annotation file says "
            f"{want[0]}x{want[1]}; the boxes would be misplaced"
        )
