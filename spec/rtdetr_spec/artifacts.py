"""Manifests written next to trained and exported artifacts, so consumers never guess.

A checkpoint's class map, an exported ONNX's logit order and input size, an engine's TensorRT
version: serving, the operator and DeepStream configs read them from here instead of from
conventions. Torch-free (pydantic only) so the operator and serving images can read them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rtdetr_spec.storage import ensure_dir, output_error

MANIFEST_FORMAT = "rtdetr-onnx/v1"


class ClassEntry(BaseModel):
    """One output class: its logit index, the dataset's category id and its name."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    category_id: int | None = None
    name: str


class ClassMap(BaseModel):
    """Logit index <-> COCO category id <-> name, recorded in every checkpoint.

    TAO uses the category id as the logit index, so ids 1..7 with ``num_classes: 7`` overflow.
    We map categories to indices explicitly and keep the mapping with the weights.
    """

    model_config = ConfigDict(extra="forbid")

    num_classes: int = Field(ge=1)
    classes: list[ClassEntry]

    @model_validator(mode="after")
    def _consistent(self) -> ClassMap:
        idx = [c.index for c in self.classes]
        if len(set(idx)) != len(idx) or any(i >= self.num_classes for i in idx):
            raise ValueError(
                f"class indices {idx} must be unique and < num_classes {self.num_classes}"
            )
        ids = [c.category_id for c in self.classes if c.category_id is not None]
        if len(set(ids)) != len(ids):
            raise ValueError(f"category ids {ids} must be unique")
        return self

    def names_by_index(self) -> list[str | None]:
        """Name per logit index (None for an index no category maps to)."""
        out: list[str | None] = [None] * self.num_classes
        for c in self.classes:
            out[c.index] = c.name
        return out

    def index_of_category(self) -> dict[int, int]:
        return {c.category_id: c.index for c in self.classes if c.category_id is not None}

    def category_of_index(self) -> dict[int, int]:
        return {c.index: c.category_id for c in self.classes if c.category_id is not None}


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    #: -1 marks a dynamic axis (the batch).
    shape: list[int]
    dtype: Literal["float32", "float16"] = "float32"


class ExportManifest(BaseModel):
    """What an exported ONNX is: written as ``<model>.manifest.json`` next to ``<model>.onnx``."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["rtdetr-onnx/v1"] = MANIFEST_FORMAT
    onnx_file: str
    onnx_sha256: str
    precision: Literal["fp32", "fp16"]
    opset: int
    input_height: int
    input_width: int
    #: -1 = dynamic batch.
    batch_size: int
    num_queries: int
    #: Class name per logit column, in logit order. ``background_index`` names a column that is
    #: not a class (DeepStream's parser drops class 0, so exports may put background first).
    class_names: list[str]
    background_index: int | None = None
    #: COCO category id per logit column (None for background), for COCO-results output.
    category_ids: list[int | None]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: Input is RGB, float32, scaled by 1/255, no mean/std normalisation (as TAO's RT-DETR).
    preprocessing: str = "rgb, resize to input_height x input_width (bilinear), /255, NCHW"
    source_checkpoint: str | None = None
    source_checkpoint_sha256: str | None = None
    backbone: str | None = None
    tool_versions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shapes(self) -> ExportManifest:
        if len(self.category_ids) != len(self.class_names):
            raise ValueError("category_ids and class_names must have one entry per logit column")
        if self.background_index is not None and not 0 <= self.background_index < len(
            self.class_names
        ):
            raise ValueError("background_index must be a logit column")
        return self

    @property
    def num_logits(self) -> int:
        return len(self.class_names)

    def detectable_classes(self) -> list[str]:
        return [n for i, n in enumerate(self.class_names) if i != self.background_index]

    @staticmethod
    def path_for(onnx_file: str | Path) -> Path:
        p = Path(onnx_file)
        return p.with_name(p.stem + ".manifest.json")

    @classmethod
    def read(cls, onnx_or_manifest: str | Path) -> ExportManifest:
        p = Path(onnx_or_manifest)
        if p.suffix == ".onnx":
            p = cls.path_for(p)
        try:
            return cls.model_validate_json(p.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: no export manifest next to the model") from None

    def write(self, onnx_file: str | Path) -> Path:
        p = self.path_for(onnx_file)
        atomic_write_text(p, json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return p


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, fsync, then rename over ``path``."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable; best effort where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_file(tmp: str | Path, path: str | Path) -> None:
    """Put a file that was written and closed under a temporary name in place as ``path``.

    For writers that cannot go through :func:`atomic_write` (an HDF5 library owns the file):
    fsync the content, give it the umask's mode, rename, fsync the folder, so a crash leaves the
    old ``path`` or the complete new one, never a complete-looking name over missing data.
    """
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    Path(tmp).chmod(0o666 & ~umask())
    Path(tmp).replace(path)
    fsync_dir(Path(path).parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` into a temp file beside ``path``, fsync, rename over ``path``.

    Readers see the old file or the new one, never a torn one, and a failed ``write`` leaves
    ``path`` untouched and no temp file behind. The file gets the umask's usual mode rather
    than mkstemp's 0600: results are read by other users (evaluation and export pods, serving).

    Raises:
        OutputWriteError: the storage refused (full, quota, read-only, permission denied),
            naming ``path``, whatever layer reported it (``torch.save`` wraps the OS error).
    """
    p = Path(path)
    ensure_dir(p.parent)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        Path(tmp).chmod(0o666 & ~umask())  # by name: the file is ours, fresh from mkstemp
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(p)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        err = output_error(e, p)
        if err is None:
            raise
        raise err from e
    fsync_dir(p.parent)
