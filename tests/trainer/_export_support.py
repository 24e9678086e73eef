"""Shared pieces of the export tests: small specs and checkpoints, DeepStream's parser in numpy,
and a tie-aware comparison of decoded detections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtdetr_spec import WAREHOUSE_CLASSES, ExperimentSpec, load_experiment
from rtdetr_trainer.export.verify import probe_batch
from rtdetr_trainer.model import build_model
from rtdetr_trainer.model.rtdetr import RTDETR
from rtdetr_trainer.model.weights import to_tao_state_dict

SIZE = 128
#: 16x16 + 8x8 + 4x4 anchors at 128x128: with this many queries every anchor is selected, so two
#: runs differ only numerically (no top-Q boundary swaps).
ALL_ANCHORS_128 = 336


def warehouse_class_map(num_classes: int = 7, first_index: int = 0) -> dict[str, Any]:
    """The model card's 7 classes (category ids 1..7) at indices first_index.. (a JSON-able
    dict)."""
    return {
        "num_classes": num_classes,
        "classes": [
            {"index": first_index + i, "category_id": i + 1, "name": n}
            for i, n in enumerate(WAREHOUSE_CLASSES)
        ],
    }


def small_spec(
    results_dir: Path,
    checkpoint: Path,
    *,
    num_classes: int = 7,
    num_queries: int = 300,
    backbone: str = "resnet_18",
    size: int = SIZE,
    dataset: dict[str, Any] | None = None,
    **export: Any,
) -> ExperimentSpec:
    data = {
        "results_dir": str(results_dir),
        "model": {"backbone": backbone, "num_queries": num_queries},
        "dataset": {
            "num_classes": num_classes,
            "augmentation": {"eval_spatial_size": [size] * 2},
            **(dataset or {}),
        },
        "export": {
            "checkpoint": str(checkpoint),
            "onnx_file": "model.onnx",
            "input_height": size,
            "input_width": size,
            **export,
        },
    }
    return load_experiment(data=data)


def diverse_scores(model: RTDETR, size: int, *, gain: float = 3.0, offset: float = -2.0) -> None:
    """Stand in for a trained classification head: re-centre and sharpen the last score head.

    A freshly initialised RT-DETR gives every query nearly the same features and scores near the
    prior (sigmoid 0.01), so its detections are ties and one class wins everywhere. A random head
    applied to the features' deviation from their mean spreads queries over all classes with
    confident, distinct scores, as a trained model's would be.
    """
    head = model.decoder.dec_score_head[-1]
    feats: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda mod, args, out: feats.append(args[0]))
    with torch.no_grad():
        model.eval()(torch.from_numpy(probe_batch(2, size, size, seed=99)))
    hook.remove()
    f = feats[-1].reshape(-1, head.in_features)
    mean = f.mean(0)
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(head.out_features, head.in_features, generator=gen)
    w = w * (gain / ((f - mean) @ w.T).std())  # logits' spread over queries: ``gain``
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(-(w @ mean) + offset)


def make_checkpoint(
    path: Path,
    spec: ExperimentSpec,
    *,
    class_map: dict[str, Any] | None,
    seed: int = 0,
    diverse: bool = True,
    num_classes: int | None = None,
    backbone: str | None = None,
) -> RTDETR:
    """A TAO-layout checkpoint (``state_dict`` with ``model.model.`` keys, ``tao_model``) of a
    model built from ``spec`` (or another num_classes/backbone), plus ``class_map`` if given."""
    torch.manual_seed(seed)
    cfg = spec.model if backbone is None else spec.model.model_copy(update={"backbone": backbone})
    size = tuple(spec.dataset.augmentation.eval_spatial_size)
    model = build_model(cfg, num_classes or spec.dataset.num_classes, size)  # type: ignore[arg-type]
    if diverse:
        diverse_scores(model, size[0])
    ckpt: dict[str, Any] = {"state_dict": to_tao_state_dict(model), "tao_model": "rtdetr"}
    if class_map is not None:
        ckpt["class_map"] = class_map
    torch.save(ckpt, path)
    return model.eval()


def deepstream_parse(
    logits: np.ndarray,
    boxes: np.ndarray,
    *,
    num_detected_classes: int,
    net_w: int,
    net_h: int,
    threshold: float = 0.5,
    keep: int = 200,
) -> list[tuple[int, float, tuple[float, float, float, float]]]:
    """``NvDsInferParseCustomDDETRTAO``'s documented logic, for one image.

    Args:
        logits: [Q, C] ``pred_logits``; boxes: [Q, 4] ``pred_boxes`` (normalised cxcywh).

    Per query: argmax over classes, sigmoid, class threshold, cxcywh -> corners x network size,
    clip; top ``keep`` by score; class 0 dropped. Refuses ``num-detected-classes != C``.
    Returns (class index, score, (x1, y1, x2, y2)).
    """
    if logits.shape[-1] != num_detected_classes:
        raise ValueError(
            f"num-detected-classes {num_detected_classes} != logits dimension {logits.shape[-1]}"
        )
    labels = logits.argmax(-1)
    scores = 1.0 / (1.0 + np.exp(-logits.max(-1).astype(np.float64)))
    found = []
    for q in np.argsort(-scores, kind="stable"):
        if scores[q] < threshold:
            continue
        cx, cy, w, h = boxes[q].astype(np.float64)
        x1, x2 = np.clip([(cx - w / 2) * net_w, (cx + w / 2) * net_w], 0, net_w)
        y1, y2 = np.clip([(cy - h / 2) * net_h, (cy + h / 2) * net_h], 0, net_h)
        found.append((int(labels[q]), float(scores[q]), (x1, y1, x2, y2)))
    return [d for d in found[:keep] if d[0] != 0]


def same_detections(
    a: dict[str, np.ndarray],
    b: dict[str, np.ndarray],
    *,
    top: int,
    box_tol: float,
    score_tol: float,
) -> None:
    """Assert ``b`` holds each of ``a``'s top detections: same label, score within
    ``score_tol``, box within ``box_tol`` pixels. Detections whose score lies within
    ``score_tol`` of the cut-off are exempt (their rank may legitimately differ)."""
    scores, labels, boxes = a["scores"], a["labels"], a["boxes"]
    cut = scores[top] if len(scores) > top else -np.inf
    used = np.zeros(len(b["scores"]), bool)
    for i in range(min(top, len(scores))):
        if scores[i] - cut <= score_tol:
            continue
        ok = (
            (b["labels"] == labels[i])
            & (np.abs(b["scores"] - scores[i]) <= score_tol)
            & (np.abs(b["boxes"] - boxes[i]).max(-1) <= box_tol)
            & ~used
        )
        assert ok.any(), (
            f"detection {i} (label {labels[i]}, score {scores[i]:.4f}, box {boxes[i]}) has no "
            f"counterpart within score {score_tol} / box {box_tol}px"
        )
        used[np.flatnonzero(ok)[0]] = True
