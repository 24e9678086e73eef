"""``rtdetr inference``: annotated images, KITTI label files and COCO-style JSON of detections.

Outputs under ``<results_dir>/inference/`` for detections with score >= conf_threshold:

* ``images_annotated/<name>``: boxes in ``inference.color_map`` colours (named colours), outline
  ``inference.outline_width``, caption ``"{class}: {score:.2f}"``. As in TAO, a class missing
  from a given colour map is not drawn; without a colour map every class is drawn.
* ``labels/<stem>.txt``: TAO's KITTI lines, every class, original-image pixels:
  ``<class> 0.00 0 0.00 x1 y1 x2 y2 0.00 0.00 0.00 0.00 0.00 0.00 0.00 score``.
* ``detections.json``: one record per detection with ``image_id`` (1-based input order),
  ``file_name``, ``category_id`` (through the class map; the logit index when unknown),
  ``class``, ``bbox`` [x, y, w, h] and ``score``.

Class names: ``dataset.infer_data_sources.classmap`` (TAO's file, line i = logit index i) when
given, else the checkpoint's class map.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageColor

from rtdetr_serving.annotate import draw_boxes, palette_colors
from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import ClassMap, atomic_write, atomic_write_text
from rtdetr_spec.cli_help import progress
from rtdetr_spec.reporting import TaskSummary
from rtdetr_trainer.data.classmap import class_map_from_names
from rtdetr_trainer.data.pipeline import read_classmap_file
from rtdetr_trainer.errors import UserInputError
from rtdetr_trainer.evaluation.model_file import load_predictor
from rtdetr_trainer.evaluation.run import device_for, loader_for
from rtdetr_trainer.inference.sources import InferDataset, InferInput, InferLoader, list_inputs
from rtdetr_trainer.results import TaskResults, failure_recorded

log = logging.getLogger(__name__)


def kitti_line(name: str, box: np.ndarray, score: float) -> str:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        f"{name} 0.00 0 0.00 {x1:.3f} {y1:.3f} {x2:.3f} {y2:.3f} "
        f"0.00 0.00 0.00 0.00 0.00 0.00 0.00 {score:.3f}"
    )


def resolve_colors(
    color_map: dict[str, str] | None, names: list[str | None]
) -> dict[str, tuple[int, int, int]]:
    """Class name -> RGB; unknown colour names are an error naming the key."""
    if color_map is None:
        return palette_colors(names)
    out = {}
    for cls, color in color_map.items():
        try:
            out[cls] = ImageColor.getrgb(color)[:3]
        except ValueError:
            raise UserInputError(
                f"inference.color_map.{cls}: {color!r} is not a colour name or #rrggbb"
            ) from None
    unknown = sorted(set(color_map) - {n for n in names if n})
    if unknown:
        log.warning("inference.color_map names classes the model does not have: %s", unknown)
    return out


def draw(
    img: Image.Image,
    det: dict[str, np.ndarray],
    names: list[str | None],
    colors: dict[str, tuple[int, int, int]],
    *,
    threshold: float,
    width: int,
) -> Image.Image:
    """``img`` with the detections scoring at least ``threshold`` drawn (named classes only)."""
    boxes = []
    for score, label, box in zip(det["scores"], det["labels"], det["boxes"], strict=True):
        name = names[int(label)] if int(label) < len(names) else None
        if score >= threshold and name is not None:
            x1, y1, x2, y2 = (float(v) for v in box)
            boxes.append((name, float(score), (x1, y1, x2, y2)))
    return draw_boxes(img, boxes, colors, width=width)


def class_names(
    spec: ExperimentSpec, class_map: ClassMap | None
) -> tuple[list[str | None], ClassMap | None]:
    """Names per logit index: the classmap file, else the checkpoint's class map."""
    source = spec.dataset.infer_data_sources.classmap
    if source:
        names = read_classmap_file(source)
        return list(names), class_map_from_names(names, spec.dataset.num_classes)
    if class_map is not None:
        return class_map.names_by_index(), class_map
    log.warning(
        "the checkpoint has no class map and dataset.infer_data_sources.classmap is not set; "
        "classes are named class_0..class_%d",
        spec.dataset.num_classes - 1,
    )
    names: list[str | None] = [f"class_{i}" for i in range(spec.dataset.num_classes)]
    return names, None


def run_inference(spec: ExperimentSpec) -> TaskSummary:
    results = TaskResults(spec, "inference")
    results.prepare()
    results.status("STARTED", "Starting RT-DETR inference")
    with failure_recorded(results):
        return _infer(spec, results)


def _infer(spec: ExperimentSpec, results: TaskResults) -> TaskSummary:
    cfg = spec.inference
    inputs = list_inputs(spec.dataset.infer_data_sources.image_dir)
    assert cfg.checkpoint is not None  # check_required("inference") ran
    predictor = load_predictor(cfg.checkpoint, spec, "inference", device_for(cfg.gpu_ids))
    if getattr(predictor, "manifest", None) is not None and predictor.class_map is not None:
        # An exported ONNX: its manifest names every logit column (incl. a background column
        # the checkpoint did not have), so a TAO classmap file would be off by one.
        if spec.dataset.infer_data_sources.classmap:
            log.warning(
                "dataset.infer_data_sources.classmap is ignored: %s names its classes in its "
                "manifest", cfg.checkpoint,
            )  # fmt: skip
        names, class_map = predictor.class_map.names_by_index(), predictor.class_map
    else:
        names, class_map = class_names(spec, predictor.class_map)
    colors = resolve_colors(cfg.color_map, names)
    category_of = class_map.category_of_index() if class_map else {}
    h, w = predictor.input_size  # the spec's size, or an exported ONNX's fixed one
    batch_size = cfg.batch_size if cfg.batch_size > 0 else spec.dataset.batch_size
    loader = loader_for(InferDataset(inputs, h, w), batch_size, spec.dataset.workers)
    images_dir, labels_dir = results.dir / "images_annotated", results.dir / "labels"
    decoder = InferLoader()
    records: list[dict[str, Any]] = []
    for batch in progress(loader, desc="inference", total=len(loader), unit="batch"):
        batch.raise_if_failed()
        dets = predictor.predict(batch.images, batch.orig_sizes.numpy())
        for idx, det in zip(batch.image_ids, dets, strict=True):
            item = inputs[idx]
            keep = det["scores"] >= cfg.conf_threshold
            kept = {k: v[keep] for k, v in det.items()}
            _write_outputs(item, decoder, kept, names, colors, images_dir, labels_dir, cfg)
            for score, label, box in zip(
                kept["scores"], kept["labels"], kept["boxes"], strict=True
            ):
                x1, y1, x2, y2 = (float(v) for v in box)
                records.append(
                    {
                        "image_id": idx + 1,
                        "file_name": item.display,
                        "category_id": category_of.get(int(label), int(label)),
                        "class": names[int(label)] if int(label) < len(names) else None,
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                        "score": round(float(score), 5),
                    }
                )
    atomic_write_text(results.dir / "detections.json", json.dumps(records))
    message = f"{len(inputs)} images, {len(records)} detections >= {cfg.conf_threshold}"
    log.info("inference: %s -> %s", message, results.dir)
    results.status("SUCCESS", f"Inference finished: {message}")
    return TaskSummary(
        task="inference",
        status="SUCCESS",
        message=message,
        artifacts={
            "images_annotated": str(images_dir),
            "labels": str(labels_dir),
            "detections": str(results.dir / "detections.json"),
        },
    )


def _write_outputs(
    item: InferInput,
    decoder: InferLoader,
    det: dict[str, np.ndarray],
    names: list[str | None],
    colors: dict[str, tuple[int, int, int]],
    images_dir: Path,
    labels_dir: Path,
    cfg: Any,
) -> None:
    rel = Path(item.output_name)
    label_file = labels_dir / rel.with_suffix(".txt")
    lines = [
        kitti_line(names[int(lb)] or f"class_{int(lb)}", box, float(s))
        for s, lb, box in zip(det["scores"], det["labels"], det["boxes"], strict=True)
        if int(lb) < len(names)
    ]
    atomic_write_text(label_file, "".join(line + "\n" for line in lines))
    annotated = draw(
        decoder.load(item),
        det,
        names,
        colors,
        threshold=cfg.conf_threshold,
        width=cfg.outline_width,
    )
    out = images_dir / rel
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(out.suffix.lower())
    kind = fmt or Image.registered_extensions().get(out.suffix.lower(), "PNG")
    options = {"quality": 95} if fmt else {}
    atomic_write(out, lambda f: annotated.save(f, format=kind, **options))
