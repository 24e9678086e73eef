"""COCO scoring: per-class AP50 (null without GT), the conf threshold without TAO's id shift."""

from __future__ import annotations

import numpy as np
import pytest

from rtdetr_trainer.data.classmap import build_class_map
from rtdetr_trainer.evaluation.coco_eval import coco_evaluate, detections_to_coco, format_table

NAMES = {1: "person", 2: "forklift", 3: "pallet"}


def _gt() -> dict:
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2, 3)]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [10, 10, 30, 40],
            "area": 1200,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 2,
            "category_id": 2,
            "bbox": [50, 50, 40, 30],
            "area": 1200,
            "iscrowd": 0,
        },
        {
            "id": 3,
            "image_id": 3,
            "category_id": 1,
            "bbox": [5, 5, 20, 20],
            "area": 400,
            "iscrowd": 0,
        },
    ]
    cats = [{"id": k, "name": v} for k, v in NAMES.items()]
    return {"images": images, "annotations": anns, "categories": cats}


def _det(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict:
    return {
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "labels": np.array(labels, np.int64),
        "scores": np.array(scores, np.float32),
    }


def test_perfect_detections_score_one_and_classes_without_gt_are_null() -> None:
    cm = build_class_map(NAMES, 3)  # ids 1..3 with 3 classes: contiguous 0..2
    dets = [
        _det([[10, 10, 40, 50]], [0], [0.9]),
        _det([[50, 50, 90, 80]], [1], [0.8]),
        _det([[5, 5, 25, 25]], [0], [0.7]),
    ]
    results = detections_to_coco([1, 2, 3], dets, cm)
    assert [r["category_id"] for r in results] == [1, 2, 1]
    m = coco_evaluate(_gt(), results)
    assert m.per_class_AP50["pallet"] is None
    assert m.per_class_AP50["person"] == pytest.approx(1.0)
    assert m.per_class_AP50["forklift"] == pytest.approx(1.0)
    assert m.mAP50 == pytest.approx(1.0) and len(m.stats) == 12
    table = format_table(m)
    assert "pallet    N/A" in table and "mAP50     1.000" in table


def test_threshold_drops_images_without_shifting_ids() -> None:
    cm = build_class_map(NAMES, 4)  # TAO convention: ids are logit indices
    dets = [
        _det([[10, 10, 40, 50]], [1], [0.05]),  # below the threshold: image 1 has nothing left
        _det([[50, 50, 90, 80]], [2], [0.9]),
        _det([[5, 5, 25, 25]], [1], [0.9]),
    ]
    results = detections_to_coco([1, 2, 3], dets, cm, conf_threshold=0.5)
    assert [(r["image_id"], r["category_id"]) for r in results] == [(2, 2), (3, 1)]
    m = coco_evaluate(_gt(), results)
    assert m.per_class_AP50["forklift"] == pytest.approx(1.0)
    assert 0.4 < m.per_class_AP50["person"] < 0.6  # one of two persons found, at full precision


def test_unmapped_logits_and_top_100_per_image() -> None:
    cm = build_class_map(NAMES, 4)  # index 0 maps to no category
    boxes = [[0, 0, 10, 10]] * 150
    dets = [_det(boxes, [0] * 10 + [1] * 140, list(np.linspace(1, 0.01, 150)))]
    results = detections_to_coco([1], dets, cm)
    assert len(results) == 100 and all(r["category_id"] == 1 for r in results)


def test_no_detections_at_all() -> None:
    m = coco_evaluate(_gt(), [])
    assert m.mAP == 0.0 and m.per_class_AP50["person"] == 0.0 and m.num_detections == 0
