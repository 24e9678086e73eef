"""Camera fragments -> COCO JSON per split, streamed: never the whole set in memory.

Each box goes through the same steps, and every box that does not become an annotation is
counted under its reason (the report's ``dropped``): the class map drops its type, it is
degenerate (x2 <= x1 or y2 <= y1 in the ground truth), it lies outside the frame once clipped,
it is smaller than ``min_box_size`` on its shorter side, or less than ``min_visibility`` of its
unoccluded box is visible. Boxes that reach past the frame are clipped to it (counted too).

Image and annotation ids are assigned in one global order (camera, then frame), the same in
every split, so split files can be merged without clashes and reruns give the same ids.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rtdetr_spec.artifacts import atomic_write
from rtdetr_trainer.data.mtmc.classes import ClassMapping
from rtdetr_trainer.data.mtmc.splits import SplitAssigner


@dataclass(frozen=True)
class BoxFilters:
    """Off by default (0): ``min_box_size`` in pixels, ``min_visibility`` in [0, 1]."""

    min_box_size: float = 0.0
    min_visibility: float = 0.0


@dataclass
class AnnotationCounts:
    images: Counter[str] = field(default_factory=Counter)
    boxes: dict[str, Counter[str]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_types: Counter[str] = field(default_factory=Counter)
    clipped: int = 0
    frames_in_gaps: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain dicts (``dataclasses.asdict`` would rebuild a Counter from its items)."""
        return {
            "images": dict(self.images),
            "boxes": {split: dict(c) for split, c in self.boxes.items()},
            "dropped": dict(self.dropped),
            "dropped_types": dict(self.dropped_types),
            "clipped": self.clipped,
            "frames_in_gaps": self.frames_in_gaps,
        }


@dataclass(frozen=True)
class CameraFragment:
    camera: str
    path: Path
    width: int
    height: int


def _area(b: tuple[float, float, float, float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


class AnnotationBuilder:
    """Turns fragment lines into COCO images and annotations with global ids."""

    def __init__(
        self,
        fragments: list[CameraFragment],
        mapping: ClassMapping,
        filters: BoxFilters,
        assigner: SplitAssigner,
    ) -> None:
        self.fragments, self.mapping, self.filters = fragments, mapping, filters
        self.assigner = assigner
        self.category_id = {name: i + 1 for i, name in enumerate(mapping.categories())}

    def _annotation(
        self, box: list[Any], width: int, height: int, counts: AnnotationCounts | None
    ) -> dict[str, Any] | None:
        kind, object_id, x1, y1, x2, y2, full = box
        known, target = self.mapping.resolve(kind)
        if not known:  # checked before decoding; a new type here means the index is stale
            raise RuntimeError(f"object type {kind!r} reached the writer unmapped")
        reason = None
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if target is None:
            reason = "class_map"
        elif x2 <= x1 or y2 <= y1:
            reason = "degenerate"
        elif cx2 <= cx1 or cy2 <= cy1:
            reason = "outside_frame"
        elif min(cx2 - cx1, cy2 - cy1) < self.filters.min_box_size:
            reason = "min_box_size"
        elif self.filters.min_visibility and full is not None and _area(full) > 0:
            inter = (max(x1, full[0]), max(y1, full[1]), min(x2, full[2]), min(y2, full[3]))
            if _area(inter) / _area(full) < self.filters.min_visibility:
                reason = "min_visibility"
        if counts is not None:
            if reason is not None:
                counts.dropped[reason] += 1
                if reason == "class_map":
                    counts.dropped_types[kind] += 1
            elif (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                counts.clipped += 1
        if reason is not None:
            return None
        w, h = cx2 - cx1, cy2 - cy1
        return {
            "category_id": self.category_id[target],  # type: ignore[index]
            "bbox": [round(cx1, 3), round(cy1, 3), round(w, 3), round(h, 3)],
            "area": round(w * h, 3),
            "iscrowd": 0,
            "object_id": object_id,
        }

    def records(
        self, counts: AnnotationCounts | None = None
    ) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
        """Yield (split, image, annotations) in global id order; gap frames are skipped."""
        image_id = ann_id = 0
        for frag in self.fragments:
            with open(frag.path) as lines:
                for line in lines:
                    rec = json.loads(line)
                    image_id += 1
                    split = self.assigner.assign(frag.camera, rec["frame"])
                    anns = []
                    for box in rec["boxes"]:
                        ann = self._annotation(box, frag.width, frag.height, counts)
                        if ann is None:
                            continue
                        ann_id += 1
                        anns.append({"id": ann_id, "image_id": image_id, **ann})
                    if split is None:
                        if counts is not None:
                            counts.frames_in_gaps += 1
                        continue
                    if counts is not None:
                        counts.images[split] += 1
                        per_class = counts.boxes.setdefault(split, Counter())
                        for ann in anns:
                            per_class[self.names[ann["category_id"] - 1]] += 1
                    image = {
                        "id": image_id,
                        "file_name": f"h5://{frag.camera}:{rec['key']}",
                        "width": frag.width,
                        "height": frag.height,
                        "camera": frag.camera,
                        "frame": rec["frame"],
                    }
                    yield split, image, anns

    @property
    def names(self) -> list[str]:
        return self.mapping.categories()

    def count(self) -> AnnotationCounts:
        counts = AnnotationCounts()
        for _ in self.records(counts):
            pass
        return counts

    def write_split(self, split: str, path: Path, info: dict[str, Any]) -> None:
        """Write one split's COCO file (temp name, then rename), streaming its arrays."""

        def write(f: IO[bytes]) -> None:
            def put(text: str) -> None:
                f.write(text.encode())

            put('{"info": ' + json.dumps(info) + ', "categories": ')
            put(json.dumps([{"id": i + 1, "name": n} for i, n in enumerate(self.names)]))
            put(', "images": [')
            sep = ""
            for name, image, _ in self.records():
                if name == split:
                    put(sep + json.dumps(image))
                    sep = ", "
            put('], "annotations": [')
            sep = ""
            for name, _, anns in self.records():
                if name == split:
                    for ann in anns:
                        put(sep + json.dumps(ann))
                        sep = ", "
            put("]}\n")

        atomic_write(path, write)
