"""Pictures of an evaluation: per-class PR curves, a confusion matrix, annotated images.

``rtdetr evaluate`` writes them as PNG beside ``metrics.json``:

* ``pr_curves.png`` (+ ``pr_curves.json``): precision against recall at IoU 0.50 for every class,
  straight from COCOeval's ``eval["precision"][0, :, k, 0, -1]`` (all areas, 100 detections per
  image) over its 101 recall thresholds: the same numbers AP50 averages, never recomputed. A
  class without ground truth (precision -1) has no curve.
* ``confusion_matrix.png`` (+ ``confusion_matrix.json``): rows are true classes plus
  ``background`` (predictions that match no box), columns predicted classes plus ``background``
  (true boxes no prediction found). Detections with score >= ``conf`` are matched greedily, the
  highest score first, to the unmatched true box of any class with the highest IoU >= 0.50.
* ``annotated_images.png``: a grid of up to 8 images, true boxes on the left, predictions
  (score >= ``conf``) on the right, drawn with the same helper as ``rtdetr inference``.

``rtdetr evaluate`` takes ``conf`` from :func:`best_f1_threshold` (never below
``evaluate.conf_threshold``).

Matplotlib's Agg canvas (no display, no global backend switch); files are written atomically.
Torch-free.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from rtdetr_serving.annotate import draw_boxes, palette_colors
from rtdetr_spec.artifacts import atomic_write, atomic_write_text
from rtdetr_trainer.evaluation.coco_eval import EvalMetrics

BACKGROUND = "background"
#: Score from which a detection counts in the confusion matrix and the annotated images.
DEFAULT_CONF = 0.25


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """PNG through a temp file and a rename (a reader never sees half a picture)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


# ---------------------------------------------------------------------------- PR curves
def pr_curve_data(metrics: EvalMetrics) -> dict[str, Any]:
    """``{"recall": [R], "precision": {class: [R] or None}}`` from COCOeval's precision array."""
    if metrics.precision50 is None or metrics.recall_thresholds is None:
        raise ValueError("these metrics carry no COCOeval precision array")
    curves: dict[str, list[float] | None] = {}
    for k, name in enumerate(metrics.pr_classes):
        p = metrics.precision50[:, k]
        curves[name] = None if bool((p <= -1).all()) else [float(v) for v in p]
    recall = [float(r) for r in metrics.recall_thresholds]
    return {"iou": 0.5, "recall": recall, "precision": curves}


def plot_pr_curves(metrics: EvalMetrics, folder: Path) -> Path:
    """``pr_curves.png`` and ``pr_curves.json``; the legend gives each class's AP50."""
    data = pr_curve_data(metrics)
    atomic_write_text(folder / "pr_curves.json", json.dumps(data) + "\n")
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    recall = np.asarray(data["recall"])
    for name, precision in data["precision"].items():
        if precision is None:
            continue
        p = np.clip(np.asarray(precision), 0.0, 1.0)  # -1 past the last reachable recall
        ap = metrics.per_class_AP50.get(name)
        ax.plot(recall, p, linewidth=1.5, label=f"{name} {ap:.3f}" if ap is not None else name)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title(f"precision-recall at IoU 0.50 (mAP50 {metrics.mAP50:.3f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, title="class AP50", title_fontsize=8)
    return save_figure(fig, folder / "pr_curves.png")


# ---------------------------------------------------------------------------- confusion matrix
def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xywh box with each of ``boxes`` [N, 4] (xywh)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def confusion_matrix(
    gt: dict[str, Any],
    results: Sequence[dict[str, Any]],
    *,
    conf: float = DEFAULT_CONF,
    iou: float = 0.5,
) -> tuple[np.ndarray, list[str]]:
    """Counts int64 [K+1, K+1] (rows true, columns predicted, last = background) and labels.

    ``gt`` is a COCO ground-truth dict (crowd boxes ignored), ``results`` COCO detections.
    """
    cats = [c["id"] for c in gt["categories"]]
    names = [c["name"] for c in gt["categories"]] + [BACKGROUND]
    col = {cid: i for i, cid in enumerate(cats)}
    bg = len(cats)
    matrix = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    gts: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and a["category_id"] in col:
            gts.setdefault(a["image_id"], []).append(a)
    dets: dict[int, list[dict[str, Any]]] = {}
    for d in results:
        if d["score"] >= conf and d["category_id"] in col:
            dets.setdefault(d["image_id"], []).append(d)
    for image_id in {img["id"] for img in gt["images"]}:
        truth = gts.get(image_id, [])
        boxes = np.asarray([a["bbox"] for a in truth], dtype=np.float64).reshape(-1, 4)
        matched = np.zeros(len(truth), dtype=bool)
        for d in sorted(dets.get(image_id, []), key=lambda d: -d["score"]):
            pred = col[d["category_id"]]
            if len(truth):
                ious = np.where(matched, -1.0, _iou(np.asarray(d["bbox"], float), boxes))
                j = int(np.argmax(ious))
                if ious[j] >= iou:
                    matched[j] = True
                    matrix[col[truth[j]["category_id"]], pred] += 1
                    continue
            matrix[bg, pred] += 1  # a prediction where there is nothing
        for j in np.flatnonzero(~matched):
            matrix[col[truth[j]["category_id"]], bg] += 1  # a box nothing found
    return matrix, names


def best_f1_threshold(
    gt: dict[str, Any], results: Sequence[dict[str, Any]], *, floor: float = 0.0
) -> float:
    """The score threshold (0.05 steps, >= ``floor``) whose detections have the best F1 at IoU
    0.50 against ``gt`` (class-correct matches; a tie goes to the higher threshold).

    RT-DETR's scores are not calibrated alike from run to run (a short fine-tune rarely scores
    above 0.5, a long one gives many near-duplicates at 0.25), so the pictures use the threshold
    this model does best at rather than a fixed one.
    """
    best = (-1.0, max(floor, DEFAULT_CONF))
    kept = [d for d in results if d["score"] >= floor]
    for conf in np.round(np.arange(0.05, 1.0, 0.05), 2):
        if conf < floor:
            continue
        matrix, _ = confusion_matrix(gt, kept, conf=float(conf))
        k = matrix.shape[0] - 1
        tp, predicted, true = np.trace(matrix[:k, :k]), matrix[:, :k].sum(), matrix[:k].sum()
        if predicted == 0 or true == 0:
            continue
        precision, recall = tp / predicted, tp / true
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        if f1 >= best[0]:
            best = (f1, float(conf))
    return best[1]


def plot_confusion_matrix(
    gt: dict[str, Any], results: Sequence[dict[str, Any]], folder: Path, conf: float
) -> Path:
    """``confusion_matrix.png`` (counts, colour by row share) and ``confusion_matrix.json``."""
    matrix, names = confusion_matrix(gt, results, conf=conf)
    payload = {"conf": conf, "iou": 0.5, "rows": "true", "columns": "predicted", "labels": names}
    atomic_write_text(
        folder / "confusion_matrix.json",
        json.dumps({**payload, "matrix": matrix.tolist()}) + "\n",
    )
    n = len(names)
    size = max(4.0, 0.6 * n + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true row")
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(f"confusion matrix (IoU 0.50, score >= {conf:g})")
    return save_figure(fig, folder / "confusion_matrix.png")


# ---------------------------------------------------------------------------- annotated images
Drawn = list[tuple[str, float, tuple[float, float, float, float]]]


def as_box(values: Any) -> tuple[float, float, float, float]:
    """x1 y1 x2 y2 of any 4-sequence, as floats."""
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


def image_pair(
    image: Image.Image, truth: Drawn, predicted: Drawn, names: Sequence[str]
) -> tuple[Image.Image, Image.Image]:
    """(true boxes drawn, predicted boxes drawn) on copies of ``image``; score 1 for truth."""
    colors = palette_colors(list(names))
    return draw_boxes(image, truth, colors), draw_boxes(image, predicted, colors)


def plot_image_grid(pairs: Sequence[tuple[str, Image.Image, Image.Image]], path: Path) -> Path:
    """Rows of (title, ground truth, prediction) panels as one PNG."""
    rows = max(len(pairs), 1)
    fig = Figure(figsize=(8, 3.2 * rows))
    for r, (title, truth, pred) in enumerate(pairs):
        for c, (img, what) in enumerate(((truth, "ground truth"), (pred, "prediction"))):
            ax = fig.add_subplot(rows, 2, 2 * r + c + 1)
            ax.imshow(np.asarray(img))
            ax.set_title(f"{title}: {what}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def annotated_pairs(
    index: Any,
    image_ids: Sequence[int],
    detections: Sequence[dict[str, np.ndarray]],
    names: Sequence[str | None],
    *,
    conf: float = DEFAULT_CONF,
    limit: int = 8,
) -> list[tuple[str, Image.Image, Image.Image]]:
    """The first ``limit`` images of a :class:`DetectionIndex` with truth and predictions.

    ``detections`` per image of ``image_ids`` (``scores``, ``labels`` = logit index, ``boxes``
    xyxy in original pixels); true boxes come from the index (crowd boxes left out).
    """
    from rtdetr_trainer.data.images import ImageLoader

    loader = ImageLoader(index)
    by_id = dict(zip(image_ids, detections, strict=True))
    named = [n for n in names if n]
    out = []
    for i in range(min(limit, len(index))):
        det = by_id.get(int(index.image_ids[i]))
        rows = index.annotation_rows(i)
        truth: Drawn = []
        for r in range(rows.start, rows.stop):
            label = int(index.labels[r])
            if index.iscrowd[r] or label >= len(names) or not names[label]:
                continue
            truth.append((str(names[label]), 1.0, as_box(index.boxes[r])))
        predicted: Drawn = []
        if det is not None:
            for score, label, box in zip(det["scores"], det["labels"], det["boxes"], strict=True):
                name = names[int(label)] if int(label) < len(names) else None
                if float(score) >= conf and name:
                    predicted.append((name, float(score), as_box(box)))
        t, p = image_pair(loader.load(i), truth, predicted, named)
        out.append((Path(index.display_name(i)).name, t, p))
    return out


def write_evaluation_plots(
    folder: Path,
    metrics: EvalMetrics,
    gt: dict[str, Any],
    results: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[str, Image.Image, Image.Image]],
    *,
    conf: float = DEFAULT_CONF,
) -> dict[str, str]:
    """All three pictures in ``folder``; returns {artifact name: path} for the summary."""
    return {
        "pr_curves": str(plot_pr_curves(metrics, folder)),
        "confusion_matrix": str(plot_confusion_matrix(gt, results, folder, conf)),
        "annotated_images": str(plot_image_grid(pairs, folder / "annotated_images.png")),
    }
