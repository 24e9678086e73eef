"""``rtdetr evaluate``: COCO mAP, mAP50 and per-class AP50 of a checkpoint on the test source.

Writes to ``<results_dir>/evaluate/``:

* ``metrics.json``: ``mAP``, ``mAP50``, ``per_class_AP50`` ({class: AP50 or null without GT}),
  ``stats`` (COCOeval's 12 numbers by name), counts, the checkpoint and its class map;
* ``detections.json``: the COCO results (top 100 per image, score >= evaluate.conf_threshold);
* ``pr_curves.png``/``.json``, ``confusion_matrix.png``/``.json``, ``annotated_images.png``:
  pictures of the same evaluation (:mod:`rtdetr_trainer.evaluation.plots`);
* ``status.json`` with TAO's ``test_mAP``/``test_mAP50`` KPI keys, ``experiment.yaml``.

and prints COCOeval's summary and the per-class table.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_spec.cli_help import progress
from rtdetr_spec.reporting import TaskSummary
from rtdetr_trainer.data.datasets import EvalDataset, collate
from rtdetr_trainer.data.pipeline import prepare_eval_data
from rtdetr_trainer.errors import DataError
from rtdetr_trainer.evaluation import plots
from rtdetr_trainer.evaluation.coco_eval import (
    EvalMetrics,
    coco_evaluate,
    detections_to_coco,
    format_table,
)
from rtdetr_trainer.evaluation.ground_truth import coco_ground_truth
from rtdetr_trainer.evaluation.model_file import load_predictor
from rtdetr_trainer.evaluation.predictor import Predictor
from rtdetr_trainer.results import TaskResults, failure_recorded

log = logging.getLogger(__name__)


def device_for(spec_gpu_ids: list[int]) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", spec_gpu_ids[0] if spec_gpu_ids else 0)
    return torch.device("cpu")


def loader_for(dataset: torch.utils.data.Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=min(workers, os.cpu_count() or 1),
        collate_fn=collate,
    )


def predict_all(
    predictor: Predictor, loader: DataLoader
) -> tuple[list[int], list[dict[str, np.ndarray]]]:
    image_ids: list[int] = []
    detections: list[dict[str, np.ndarray]] = []
    for batch in progress(loader, desc="evaluate", total=len(loader), unit="batch"):
        batch.raise_if_failed()
        detections += predictor.predict(batch.images, batch.orig_sizes.numpy())
        image_ids += batch.image_ids
    return image_ids, detections


def run_evaluate(spec: ExperimentSpec) -> tuple[EvalMetrics, TaskSummary]:
    results = TaskResults(spec, "evaluate")
    results.prepare()
    results.status("STARTED", "Starting RT-DETR evaluation")
    with failure_recorded(results):
        return _evaluate(spec, results)


def _evaluate(spec: ExperimentSpec, results: TaskResults) -> tuple[EvalMetrics, TaskSummary]:
    cfg = spec.evaluate
    assert cfg.checkpoint is not None  # check_required("evaluate") ran
    predictor = load_predictor(cfg.checkpoint, spec, "evaluate", device_for(cfg.gpu_ids))
    index, categories, class_map = prepare_eval_data(
        spec, "dataset.test_data_sources", predictor.class_map
    )
    if index.num_annotations == 0:
        raise DataError(
            f"dataset.test_data_sources: {len(index)} images but not one annotated box: mAP, "
            "mAP50 and every class's AP50 would be undefined (COCOeval's -1), not 0; evaluate "
            "on a set with ground truth"
        )
    h, w = predictor.input_size  # the spec's size, or an exported ONNX's fixed one
    batch_size = cfg.batch_size if cfg.batch_size > 0 else spec.dataset.batch_size
    loader = loader_for(EvalDataset(index, h, w), batch_size, spec.dataset.workers)
    log.info("evaluating %s on %d images at %dx%d", cfg.checkpoint, len(index), w, h)
    image_ids, detections = predict_all(predictor, loader)
    coco_results = detections_to_coco(
        image_ids, detections, class_map, conf_threshold=cfg.conf_threshold
    )
    gt = coco_ground_truth(index, categories)
    metrics = coco_evaluate(gt, coco_results)
    undefined = sorted(name for name, ap in metrics.per_class_AP50.items() if ap is None)
    if undefined:
        log.warning(
            "AP50 undefined (no ground truth in the test set) for: %s; reported as null, and "
            "mAP averages the other classes",
            ", ".join(undefined),
        )
    payload: dict[str, Any] = {
        **metrics.to_json(),
        "checkpoint": cfg.checkpoint,
        "conf_threshold": cfg.conf_threshold,
        "input_size": [h, w],
        "class_map": class_map.model_dump(),
    }
    atomic_write_text(results.dir / "metrics.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(results.dir / "detections.json", json.dumps(coco_results))
    conf = plots.best_f1_threshold(gt, coco_results, floor=cfg.conf_threshold)
    log.info("pictures: detections scoring >= %.2f (the best F1 at IoU 0.50)", conf)
    pairs = plots.annotated_pairs(
        index, image_ids, detections, class_map.names_by_index(), conf=conf
    )
    pictures = plots.write_evaluation_plots(
        results.dir, metrics, gt, coco_results, pairs, conf=conf
    )
    log.info("wrote %s", ", ".join(Path(p).name for p in pictures.values()))
    print(metrics.summary, end="", flush=True)
    print(format_table(metrics), flush=True)
    kpi = {"test_mAP": metrics.mAP, "test_mAP50": metrics.mAP50}
    results.status("SUCCESS", "Evaluation finished successfully", kpi=kpi)
    summary = TaskSummary(
        task="evaluate",
        status="SUCCESS",
        metrics={
            "mAP": metrics.mAP,
            "mAP50": metrics.mAP50,
            "per_class_AP50": metrics.per_class_AP50,
        },
        artifacts={
            "metrics": str(results.dir / "metrics.json"),
            "detections": str(results.dir / "detections.json"),
            **pictures,
        },
    )
    return metrics, summary
