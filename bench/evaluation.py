"""COCO bbox evaluation time: pycocotools against faster-coco-eval on identical inputs.

The ground truth is a synthetic 7-class warehouse set (1280x720 images, 2-14 boxes each) and
the detections a deterministic mix of jittered true positives (some with the wrong class) and
low-scoring false positives, 100 per image, as a detector's top-100 output would be. Both
evaluators get the same dicts; the result records the wall time of loadRes + evaluate +
accumulate + summarize for each and the largest absolute difference of the 12 summary stats and
of the per-class AP50 (``mean(precision[0, :, k, 0, -1][> -1])``, the model card's KPI).

Run as ``python -m bench.evaluation '<json spec>'`` (keys ``images``, ``repeats``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from bench.env import activate_peers

CLASSES = ("person", "agility_digit", "gr1_t2", "nova_carter", "transporter", "forklift", "pallet")
W, H = 1280, 720


def synthetic_coco(num_images: int, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img_id in range(1, num_images + 1):
        images.append({"id": img_id, "width": W, "height": H, "file_name": f"{img_id:06d}.jpg"})
        n = int(rng.integers(2, 15))
        wh = rng.uniform([12, 20], [400, 360], size=(n, 2))
        xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([W, H]) - wh)
        cats = rng.integers(1, 8, size=n)
        for (x, y), (w, h), c in zip(xy, wh, cats, strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": int(c),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
        # True positives: jittered boxes, 85% with the right class.
        jitter = rng.normal(0, 0.08, size=(n, 4)) * np.concatenate([wh, wh], 1)
        boxes = np.concatenate([xy, wh], 1) + jitter
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 2.0)
        labels = np.where(rng.random(n) < 0.85, cats, rng.integers(1, 8, size=n))
        scores = rng.uniform(0.3, 1.0, size=n)
        # False positives up to 100 detections per image, mostly low scores.
        m = 100 - n
        fwh = rng.uniform([10, 10], [300, 300], size=(m, 2))
        fxy = rng.uniform(0, 1, size=(m, 2)) * (np.array([W, H]) - fwh)
        boxes = np.concatenate([boxes, np.concatenate([fxy, fwh], 1)])
        labels = np.concatenate([labels, rng.integers(1, 8, size=m)])
        scores = np.concatenate([scores, rng.beta(1, 6, size=m)])
        for b, c, s in zip(boxes, labels, scores, strict=True):
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": int(c),
                    "bbox": [round(float(v), 3) for v in b],
                    "score": round(float(s), 5),
                }
            )
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
    }
    return gt, dets


def _run(coco_cls: Any, eval_cls: Any, gt: dict[str, Any], dets: list[dict[str, Any]]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_cls()
        coco_gt.dataset = json.loads(json.dumps(gt))  # each evaluator gets its own copy
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(dets)))
        ev = eval_cls(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_class_ap50(ev: Any) -> np.ndarray:
    precision = ev.eval["precision"]
    out = []
    for k in range(len(ev.params.catIds)):
        p = precision[0, :, k, 0, -1]
        p = p[p > -1]
        out.append(float(p.mean()) if p.size else float("nan"))
    return np.array(out)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    activate_peers()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    load_before = os.getloadavg()
    gt, dets = synthetic_coco(spec["images"])
    impls: dict[str, tuple[Any, Any]] = {"pycocotools": (COCO, COCOeval)}
    try:
        import faster_coco_eval
        from faster_coco_eval import COCO as FCOCO
        from faster_coco_eval import COCOeval_faster

        impls["faster-coco-eval"] = (FCOCO, COCOeval_faster)
        fce_version = faster_coco_eval.__version__
    except ImportError as e:
        fce_version = f"not importable: {e}"
    times: dict[str, list[float]] = {}
    evals: dict[str, Any] = {}
    for _ in range(spec["repeats"]):
        for name, (coco_cls, eval_cls) in impls.items():
            t0 = time.perf_counter()
            evals[name] = _run(coco_cls, eval_cls, gt, dets)
            times.setdefault(name, []).append(time.perf_counter() - t0)
    result: dict[str, Any] = {
        "images": len(gt["images"]),
        "annotations": len(gt["annotations"]),
        "detections": len(dets),
        "times": times,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "faster_coco_eval": fce_version,
        "stats": {k: [float(s) for s in ev.stats] for k, ev in evals.items()},
        "per_class_ap50": {k: per_class_ap50(ev).tolist() for k, ev in evals.items()},
    }
    if "faster-coco-eval" in evals:
        a, b = evals["pycocotools"], evals["faster-coco-eval"]
        result["max_abs_diff_stats"] = float(np.max(np.abs(np.array(a.stats) - b.stats)))
        result["max_abs_diff_ap50"] = float(
            np.nanmax(np.abs(per_class_ap50(a) - per_class_ap50(b)))
        )
    result["load_before"], result["load_after"] = load_before, os.getloadavg()
    return result


if __name__ == "__main__":
    out = run(json.loads(sys.argv[1]))
    sys.stdout.write("BENCH-RESULT " + json.dumps(out) + "\n")
