"""A detection dataset's annotation index as a handful of flat numpy arrays.

A COCO index held as a Python list of dicts costs ~1 KB of refcounted objects per image, and
every DataLoader worker that touches them (refcount updates) copies the pages: with 8 workers x 8
GPUs the index is copied 64 times (detectron2's and TAO's ``serialized`` datasets exist for this).
Here there are no per-image Python objects at all: strings are packed into one uint8 buffer with
offsets, annotations are rows of arrays sliced by per-image offsets.

``dataset_type: serialized`` writes these arrays once per node to a folder and every local rank
and worker memory-maps them (:meth:`DetectionIndex.save` / :meth:`DetectionIndex.load`), so the
page cache holds one copy. ``default`` keeps the same arrays in each process's own memory.

Shapes: N images, M annotations.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PackedStrings:
    """N strings as one uint8 buffer plus int64 offsets [N+1]."""

    data: np.ndarray
    offsets: np.ndarray

    @classmethod
    def pack(cls, items: list[str]) -> PackedStrings:
        encoded = [s.encode() for s in items]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return cls(data=data, offsets=offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.data[lo:hi].tobytes().decode()


@dataclass(frozen=True)
class DetectionIndex:
    """Images and their annotations, columnar.

    Attributes:
        image_ids: int64 [N] COCO image ids.
        widths, heights: int32 [N] sizes from the annotation file (pixels).
        sources: int16 [N] which data source each image comes from (for ``sample_size``).
        paths: [N] image file paths, or H5 file paths for H5 frames.
        h5_keys: [N] frame key in the H5 ``rgb`` group, "" for plain files.
        ann_offsets: int64 [N+1]; image i owns annotation rows ann_offsets[i]:ann_offsets[i+1].
        boxes: float32 [M, 4] x1, y1, x2, y2 in pixels, clipped to the image.
        labels: int64 [M] logit index (through the class map).
        category_ids: int64 [M] COCO category ids.
        ann_ids: int64 [M] COCO annotation ids.
        iscrowd: uint8 [M].
        areas: float32 [M] COCO ``area`` (w*h when absent).
    """

    image_ids: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    sources: np.ndarray
    paths: PackedStrings
    h5_keys: PackedStrings
    ann_offsets: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    ann_ids: np.ndarray
    iscrowd: np.ndarray
    areas: np.ndarray
    #: set when memory-mapped from :meth:`save`'s folder; pickling then sends only this path.
    folder: str | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def __reduce__(self) -> tuple[object, ...]:
        if self.folder is not None:  # a spawned worker re-maps the same files: no copy
            return (DetectionIndex.load, (self.folder,))
        return super().__reduce__()

    @property
    def num_annotations(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        return self.paths[i]

    def h5_key(self, i: int) -> str:
        return self.h5_keys[i]

    def display_name(self, i: int) -> str:
        key = self.h5_keys[i]
        return f"{self.paths[i]}:{key}" if key else self.paths[i]

    def annotation_rows(self, i: int) -> slice:
        return slice(int(self.ann_offsets[i]), int(self.ann_offsets[i + 1]))

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "folder":
                continue
            if isinstance(value, PackedStrings):
                out[f"{f.name}.data"] = value.data
                out[f"{f.name}.offsets"] = value.offsets
            else:
                out[f.name] = value
        return out

    def save(self, folder: str | Path) -> Path:
        """Write the arrays as ``.npy`` files into ``folder`` atomically (temp dir + rename)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            for name, arr in self.arrays().items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps({"images": len(self)}))
            if folder.exists():
                shutil.rmtree(folder)
            tmp.replace(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> DetectionIndex:
        """Open a saved index; with ``mmap`` the arrays are read-only views of the page cache."""
        folder = Path(folder)
        mode = "r" if mmap else None

        def arr(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False)

        kwargs: dict[str, object] = {"folder": str(folder) if mmap else None}
        for f in fields(cls):
            if f.name == "folder":
                continue
            if f.name in ("paths", "h5_keys"):
                kwargs[f.name] = PackedStrings(arr(f"{f.name}.data"), arr(f"{f.name}.offsets"))
            else:
                kwargs[f.name] = arr(f.name)
        return cls(**kwargs)  # type: ignore[arg-type]


class IndexBuilder:
    """Accumulates images and annotations, then freezes them into a :class:`DetectionIndex`."""

    def __init__(self) -> None:
        self.image_ids: list[int] = []
        self.widths: list[int] = []
        self.heights: list[int] = []
        self.sources: list[int] = []
        self.paths: list[str] = []
        self.h5_keys: list[str] = []
        self.counts: list[int] = []
        self.boxes: list[tuple[float, float, float, float]] = []
        self.labels: list[int] = []
        self.category_ids: list[int] = []
        self.ann_ids: list[int] = []
        self.iscrowd: list[int] = []
        self.areas: list[float] = []

    def add_image(
        self, image_id: int, width: int, height: int, source: int, path: str, h5_key: str
    ) -> None:
        self.image_ids.append(image_id)
        self.widths.append(width)
        self.heights.append(height)
        self.sources.append(source)
        self.paths.append(path)
        self.h5_keys.append(h5_key)
        self.counts.append(0)

    def add_annotation(
        self,
        box_xyxy: tuple[float, float, float, float],
        label: int,
        category_id: int,
        ann_id: int,
        iscrowd: int,
        area: float,
    ) -> None:
        """Attach an annotation to the most recently added image."""
        self.counts[-1] += 1
        self.boxes.append(box_xyxy)
        self.labels.append(label)
        self.category_ids.append(category_id)
        self.ann_ids.append(ann_id)
        self.iscrowd.append(iscrowd)
        self.areas.append(area)

    def build(self) -> DetectionIndex:
        offsets = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        return DetectionIndex(
            image_ids=np.asarray(self.image_ids, dtype=np.int64),
            widths=np.asarray(self.widths, dtype=np.int32),
            heights=np.asarray(self.heights, dtype=np.int32),
            sources=np.asarray(self.sources, dtype=np.int16),
            paths=PackedStrings.pack(self.paths),
            h5_keys=PackedStrings.pack(self.h5_keys),
            ann_offsets=offsets,
            boxes=np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(self.labels, dtype=np.int64),
            category_ids=np.asarray(self.category_ids, dtype=np.int64),
            ann_ids=np.asarray(self.ann_ids, dtype=np.int64),
            iscrowd=np.asarray(self.iscrowd, dtype=np.uint8),
            areas=np.asarray(self.areas, dtype=np.float32),
        )
