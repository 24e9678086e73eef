"""``rtdetr evaluate``'s pictures: PR curves are COCOeval's own precision, the confusion matrix
counts what it should, every file is a real PNG."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rtdetr_trainer.evaluation import plots
from rtdetr_trainer.evaluation.coco_eval import coco_evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _gt() -> dict:
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2, 3)]
    boxes = [(1, 1, [10, 10, 30, 40]), (2, 2, [50, 50, 40, 30]), (3, 1, [5, 5, 20, 20])]
    boxes += [(3, 2, [60, 60, 30, 30]), (2, 1, [5, 5, 30, 30])]
    anns = [
        {"id": n + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for n, (i, c, b) in enumerate(boxes)
    ]
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "forklift"}, {"id": 3, "name": "pallet"}]
    return {"images": images, "annotations": anns, "categories": cats}


def _results() -> list[dict]:
    def det(i: int, c: int, b: list[float], s: float) -> dict:
        return {"image_id": i, "category_id": c, "bbox": b, "score": s}

    return [
        det(1, 1, [11, 10, 30, 40], 0.9),  # person found
        det(2, 2, [50, 52, 40, 30], 0.8),  # forklift found
        det(3, 2, [5, 5, 20, 20], 0.7),  # the person of image 3 called a forklift
        det(3, 1, [70, 5, 10, 10], 0.6),  # a person where there is nothing
        det(2, 1, [6, 5, 30, 30], 0.2),  # a person found, but below the confusion threshold
    ]


def _is_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()


def test_pr_curves_are_cocoevals_precision_at_iou_050(tmp_path: Path) -> None:
    gt, results = _gt(), _results()
    metrics = coco_evaluate(gt, results)
    png = plots.plot_pr_curves(metrics, tmp_path)
    _is_png(png)
    data = json.loads((tmp_path / "pr_curves.json").read_text())

    with contextlib.redirect_stdout(io.StringIO()):  # an independent COCOeval of the same input
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    assert np.allclose(data["recall"], ev.params.recThrs)
    names = {1: "person", 2: "forklift", 3: "pallet"}
    for k, cid in enumerate(ev.params.catIds):
        expected = ev.eval["precision"][0, :, k, 0, -1]
        got = data["precision"][names[cid]]
        if (expected == -1).all():
            assert got is None  # pallet: no ground truth, no curve
        else:
            assert np.allclose(got, expected)
            mean = expected[expected > -1].mean()  # the curve is what AP50 averages
            assert np.isclose(mean, metrics.per_class_AP50[names[cid]])
    assert data["precision"]["person"] != data["precision"]["forklift"]


def test_confusion_matrix_has_a_background_row_and_column(tmp_path: Path) -> None:
    matrix, names = plots.confusion_matrix(_gt(), _results(), conf=0.25)
    assert names == ["person", "forklift", "pallet", "background"]
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1  # image 1's person
    expected[1, 1] = 1  # image 2's forklift
    expected[0, 1] = 1  # image 3's person, predicted forklift
    expected[3, 0] = 1  # a person predicted on background
    expected[0, 3] = 1  # image 2's person: only a 0.2 detection, so missed
    expected[1, 3] = 1  # image 3's forklift: nothing found
    assert (matrix == expected).all(), matrix
    _is_png(plots.plot_confusion_matrix(_gt(), _results(), tmp_path, 0.25))
    saved = json.loads((tmp_path / "confusion_matrix.json").read_text())
    assert saved["matrix"] == expected.tolist() and saved["labels"][-1] == "background"


def test_image_grid_shows_truth_and_prediction_side_by_side(tmp_path: Path) -> None:
    image = Image.new("RGB", (80, 60), (40, 40, 40))
    truth, pred = plots.image_pair(
        image,
        [("person", 1.0, (5.0, 5.0, 40.0, 50.0))],
        [("forklift", 0.9, (30.0, 10.0, 70.0, 40.0))],
        ["person", "forklift"],
    )
    assert truth.getpixel((5, 20)) != (40, 40, 40) and truth.getpixel((70, 20)) == (40, 40, 40)
    assert pred.getpixel((70, 20)) != (40, 40, 40) and pred.getpixel((5, 20)) == (40, 40, 40)
    path = plots.plot_image_grid([("a.jpg", truth, pred)], tmp_path / "grid.png")
    _is_png(path)


@pytest.mark.slow
def test_evaluate_writes_the_pictures_next_to_metrics(tmp_path: Path) -> None:
    from rtdetr_trainer.cli import main
    from tests.trainer.trainer_fixtures import tiny_checkpoint

    spec_file, ckpt, _ = tiny_checkpoint(tmp_path)
    assert main(["evaluate", "-e", str(spec_file), f"evaluate.checkpoint={ckpt}"]) == 0
    out = tmp_path / "results" / "evaluate"
    assert (out / "metrics.json").is_file()
    for name in ("pr_curves.png", "confusion_matrix.png", "annotated_images.png"):
        _is_png(out / name)
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    assert len(matrix["labels"]) == 8 and matrix["labels"][-1] == "background"


def test_picture_threshold_is_the_best_f1_one() -> None:
    gt, results = _gt(), _results()
    conf = plots.best_f1_threshold(gt, results)

    def f1(c: float) -> float:
        m, _ = plots.confusion_matrix(gt, results, conf=c)
        tp = np.trace(m[:3, :3])
        p, r = tp / m[:, :3].sum(), tp / m[:3].sum()
        return 2 * p * r / (p + r)

    # 0.2 also keeps image 2's person, one more match: F1 0.6 (0.25: 0.44, 0.8: 0.57)
    assert conf == 0.2 and f1(0.2) > f1(0.8) > f1(0.25)
    assert plots.best_f1_threshold(gt, results, floor=0.5) == 0.8  # 0.75 ties: the higher
