"""``rtdetr export``: TAO-compatible ONNX, FP16 ONNX, DeepStream files and a manifest per file.

Entry point for the CLI: :func:`run`. The ONNX predictor that lets ``rtdetr evaluate`` and
``rtdetr inference`` run an exported file is :class:`rtdetr_trainer.export.predictor.
OnnxPredictor`. Heavy imports (torch, onnx, Model Optimizer) happen on first use, so importing
this package is cheap.

Outputs (``<results_dir>/export/`` unless ``export.onnx_file`` is absolute)::

    <stem>.onnx                 inputs [batch,3,H,W] -> pred_logits [batch,Q,C], pred_boxes
    <stem>.manifest.json        rtdetr_spec.artifacts.ExportManifest
    <stem>.fp16.onnx            export.fp16: Model Optimizer autocast, float32 I/O
    <stem>.fp16.manifest.json
    nvdsinfer_config.yaml       export.serialize_nvdsinfer (+ nvdsinfer_config.fp16.yaml)
    labels.txt
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rtdetr_trainer.export.errors import (
    ExportError,
    ExportInputError,
    ExportVerificationError,
    ModelFileError,
)

if TYPE_CHECKING:
    from rtdetr_spec import ExperimentSpec
    from rtdetr_spec.artifacts import TaskSummary

__all__ = [
    "ExportError",
    "ExportInputError",
    "ExportVerificationError",
    "ModelFileError",
    "run",
]

log = logging.getLogger(__name__)

TERMINATION_LOG_ENV = "RTDETR_TERMINATION_LOG"


def run(spec: ExperimentSpec) -> TaskSummary:
    """Export ``spec.export.checkpoint``; returns the task summary (also written to
    ``$RTDETR_TERMINATION_LOG`` when set). Raises :class:`ExportError` subclasses (their
    ``exit_code`` is the process exit status) or the spec's ``SpecError`` (exit 2)."""
    from rtdetr_spec.artifacts import TaskSummary
    from rtdetr_trainer.export.task import run_export

    try:
        summary = run_export(spec)
    except Exception as e:
        _terminate(TaskSummary(task="export", status="FAILURE", message=str(e)[:2000]))
        raise
    _terminate(summary)
    return summary


def _terminate(summary: TaskSummary) -> None:
    path = os.environ.get(TERMINATION_LOG_ENV)
    if not path:
        return
    try:
        Path(path).write_text(summary.to_message())
    except OSError as e:
        log.warning("could not write the termination message to %s: %s", path, e)
