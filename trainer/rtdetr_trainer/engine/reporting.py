"""What training reports, per epoch and at the end: TAO status lines, metrics, the summary.

Only global rank 0 writes. The final :class:`rtdetr_spec.reporting.TaskSummary` goes to
``<results>/train/summary.json``; the launcher turns it into the container's termination message.
Its ``epoch`` counts epochs completed (``status.json`` keeps TAO's 0-based epoch index).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_spec.reporting import TaskSummary
from rtdetr_trainer.evaluation.coco_eval import EvalMetrics, format_table
from rtdetr_trainer.results import TaskResults

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def report_epoch(
    results: TaskResults,
    epoch: int,
    num_epochs: int,
    record: dict[str, Any],
    times: list[float],
) -> None:
    """One metrics record, one RUNNING status line and one log line for a finished epoch."""
    results.metrics(record)
    kpi = {k: v for k, v in record.items() if isinstance(v, float)}
    per_epoch = sum(times) / len(times)
    results.status(
        "RUNNING",
        f"epoch {epoch + 1}/{num_epochs} done",
        epoch=epoch,
        max_epoch=num_epochs,
        time_per_epoch=f"{per_epoch:.1f}s",
        eta=f"{per_epoch * (num_epochs - epoch - 1):.0f}s",
        kpi=kpi,
    )
    shown = "  ".join(f"{k} {v:.4f}" for k, v in kpi.items() if not math.isnan(v))
    log.info("epoch %d/%d  %s", epoch + 1, num_epochs, shown)


def finish(
    results: TaskResults,
    epoch: int,
    num_epochs: int,
    history: list[dict[str, Any]],
    val_metrics: EvalMetrics | None,
    last_checkpoint: Path | None,
    *,
    writer: bool,
    best_checkpoint: Path | None = None,
    best_model: Path | None = None,
) -> TaskSummary:
    """The run's summary (written, with a SUCCESS status line and the KPI table, by rank 0)."""
    metrics: dict[str, Any] = {}
    if history:
        last = history[-1]
        for key in ("train_loss", "val_loss", "val_mAP", "val_mAP50"):
            if key in last:
                metrics[key] = last[key]
        if "val_per_class_AP50" in last:
            metrics["per_class_AP50"] = last["val_per_class_AP50"]
    artifacts = {"checkpoint": str(last_checkpoint)} if last_checkpoint else {}
    if best_checkpoint is not None:
        artifacts["best_checkpoint"] = str(best_checkpoint)
    if best_model is not None:  # model_best.pth, by val_mAP50
        artifacts["best_model"] = str(best_model)
    artifacts["results_dir"] = str(results.dir)
    summary = TaskSummary(
        task="train",
        status="SUCCESS",
        epoch=epoch + 1,
        num_epochs=num_epochs,
        metrics=metrics,
        artifacts=artifacts,
    )
    if writer:
        atomic_write_text(results.dir / SUMMARY_FILE, summary.model_dump_json(indent=2))
        kpi = {k: v for k, v in metrics.items() if isinstance(v, float)}
        results.status(
            "SUCCESS", "Training finished successfully", epoch=epoch, max_epoch=num_epochs, kpi=kpi
        )
        if val_metrics is not None:
            print(format_table(val_metrics, title="validation AP@0.50 per class"), flush=True)
    return summary


def read_summary(results_dir: str | Path) -> TaskSummary | None:
    """The summary a finished run left in its results folder (None if absent or unreadable)."""
    try:
        text = (Path(results_dir) / SUMMARY_FILE).read_text()
        return TaskSummary.model_validate(json.loads(text))
    except (OSError, ValueError):
        return None
