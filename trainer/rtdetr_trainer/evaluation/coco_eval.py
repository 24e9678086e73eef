"""COCO mAP with pycocotools, plus the per-class AP@0.50 the model card's KPI table reports.

TAO reports only ``stats[0]``/``stats[1]``. The model card's table (AP@0.50 per class, 100
detections
per image, greedy IoU matching highest score first) is COCOeval's precision at IoU 0.50 averaged
over recall thresholds for one category, all areas, maxDets 100:

    AP50[k] = mean(E.eval["precision"][0, :, k, 0, -1][> -1])

and null when class k has no ground truth (precision stays -1). Torch-free.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rtdetr_spec.artifacts import ClassMap

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "ARmax1",
    "ARmax10",
    "ARmax100",
    "ARs",
    "ARm",
    "ARl",
)
MAX_DETECTIONS = 100


@dataclass
class EvalMetrics:
    mAP: float  # noqa: N815 (metric names as TAO and the model card spell them)
    mAP50: float  # noqa: N815 (metric names as TAO and the model card spell them)
    per_class_AP50: dict[str, float | None]  # noqa: N815 (metric names as TAO and the model card spell them)
    stats: dict[str, float]
    num_images: int
    num_detections: int
    summary: str = field(default="", repr=False)
    #: COCOeval's precision at IoU 0.50, all areas, 100 detections: float [R=101, K] with -1
    #: where a class has no ground truth; columns in ``pr_classes`` order.
    precision50: np.ndarray | None = field(default=None, repr=False)
    #: COCOeval's recall thresholds, float [R] (0.00, 0.01, ..., 1.00).
    recall_thresholds: np.ndarray | None = field(default=None, repr=False)
    pr_classes: list[str] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "mAP": self.mAP,
            "mAP50": self.mAP50,
            "per_class_AP50": self.per_class_AP50,
            "stats": self.stats,
            "num_images": self.num_images,
            "num_detections": self.num_detections,
        }


def detections_to_coco(
    image_ids: list[int],
    detections: list[dict[str, np.ndarray]],
    class_map: ClassMap,
    *,
    conf_threshold: float = 0.0,
    max_detections: int = MAX_DETECTIONS,
) -> list[dict[str, Any]]:
    """Per-image detections (``scores``, ``labels`` = logit index, ``boxes`` xyxy px) -> COCO
    results (``bbox`` xywh, ``category_id`` through the class map).

    Keyed by image id, so an image without detections above the threshold simply contributes
    none (TAO drops such images before zipping with targets, shifting every later image's id).
    Logit indices no category maps to (index 0 under TAO's 1-based ids) are not detections.
    """
    category_of = class_map.category_of_index()
    out: list[dict[str, Any]] = []
    for image_id, det in zip(image_ids, detections, strict=True):
        order = np.argsort(-det["scores"], kind="stable")
        kept = 0
        for j in order:
            score = float(det["scores"][j])
            if score < conf_threshold or kept >= max_detections:
                break
            cid = category_of.get(int(det["labels"][j]))
            if cid is None:
                continue
            x1, y1, x2, y2 = (float(v) for v in det["boxes"][j])
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(cid),
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(score, 5),
                }
            )
            kept += 1
    return out


def coco_evaluate(gt: dict[str, Any], results: list[dict[str, Any]]) -> EvalMetrics:
    """Run COCOeval (bbox) on a GT dict and COCO results; pycocotools' chatter is captured."""
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list; no detections means zero AP
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": gt["images"],
                "categories": gt["categories"],
                "annotations": [],
            }
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    per_class: dict[str, float | None] = {}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cid in enumerate(ev.params.catIds):
        p = precision[0, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cid]] = float(p.mean()) if p.size else None
    return EvalMetrics(
        mAP=max(stats["AP"], 0.0),
        mAP50=max(stats["AP50"], 0.0),
        per_class_AP50=per_class,
        stats=stats,
        num_images=len(gt["images"]),
        num_detections=len(results),
        summary=summary.getvalue(),
        precision50=np.array(precision[0, :, :, 0, -1]),
        recall_thresholds=np.array(ev.params.recThrs),
        pr_classes=[names[cid] for cid in ev.params.catIds],
    )


def format_table(metrics: EvalMetrics, *, title: str = "AP@0.50 per class") -> str:
    """The model card's KPI table (one row per class) with mAP/mAP50 underneath."""
    width = max([len(n) for n in metrics.per_class_AP50] + [len("class")])
    lines = [title, f"{'class':<{width}}  AP50", f"{'-' * width}  -----"]
    for name, ap in metrics.per_class_AP50.items():  # N/A: no ground truth, AP undefined
        lines.append(f"{name:<{width}}  {'N/A' if ap is None else f'{ap:.3f}'}")
    lines.append(f"{'-' * width}  -----")
    lines.append(f"{'mAP50':<{width}}  {metrics.mAP50:.3f}")
    lines.append(f"{'mAP':<{width}}  {metrics.mAP:.3f}")
    return "\n".join(lines)
