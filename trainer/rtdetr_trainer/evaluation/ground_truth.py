"""The ground truth COCOeval scores against, built from the trainer's validated index.

Shared by validation during training and ``rtdetr evaluate``, so both score the same way.
"""

from __future__ import annotations

from typing import Any

from rtdetr_trainer.data.index import DetectionIndex
from rtdetr_trainer.errors import DataError


def coco_ground_truth(index: DetectionIndex, categories: dict[int, str]) -> dict[str, Any]:
    """A pycocotools-ready GT dict built from the validated index.

    Annotation ids are renumbered 1..M: pycocotools keys annotations by id, and ids that repeat
    across shard files of one source would silently overwrite each other.
    """
    images = [
        {
            "id": int(index.image_ids[i]),
            "width": int(index.widths[i]),
            "height": int(index.heights[i]),
            "file_name": index.display_name(i),
        }
        for i in range(len(index))
    ]
    ids = [img["id"] for img in images]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:10]
        raise DataError(
            f"image ids {dupes} appear in more than one annotation file of the evaluation source; "
            "COCO evaluation needs unique image ids"
        )
    anns = []
    for i in range(len(index)):
        rows = index.annotation_rows(i)
        for r in range(rows.start, rows.stop):
            x1, y1, x2, y2 = (float(v) for v in index.boxes[r])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": int(index.image_ids[i]),
                    "category_id": int(index.category_ids[r]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(index.areas[r]),
                    "iscrowd": int(index.iscrowd[r]),
                }
            )
    cats = [{"id": cid, "name": name} for cid, name in sorted(categories.items())]
    return {"images": images, "annotations": anns, "categories": cats}
