"""``rtdetr export``: TAO-compatible ONNX, FP16 ONNX, DeepStream files and a manifest per file.

Entry point for the CLI: :func:`run`. ``rtdetr evaluate`` and ``rtdetr inference`` run an
exported file with :class:`rtdetr_trainer.evaluation.onnx_predictor.OnnxPredictor`, which reads
what this package writes and imports nothing from it. Heavy imports (torch, onnx, Model
Optimizer) happen on first use, so importing this package is cheap.

Outputs (``<results_dir>/export/`` unless ``export.onnx_file`` is absolute)::

    <stem>.onnx                 inputs [batch,3,H,W] -> pred_logits [batch,Q,C], pred_boxes
    <stem>.manifest.json        rtdetr_spec.artifacts.ExportManifest
    <stem>.fp16.onnx            export.fp16: Model Optimizer autocast, float32 I/O
    <stem>.fp16.manifest.json
    nvdsinfer_config.yaml       export.serialize_nvdsinfer (+ nvdsinfer_config.fp16.yaml)
    labels.txt
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtdetr_trainer.export.errors import (
    ExportError,
    ExportInputError,
    ExportVerificationError,
)

if TYPE_CHECKING:
    from rtdetr_spec import ExperimentSpec
    from rtdetr_spec.reporting import TaskSummary

__all__ = [
    "ExportError",
    "ExportInputError",
    "ExportVerificationError",
    "run",
]


def run(spec: ExperimentSpec) -> TaskSummary:
    """Export ``spec.export.checkpoint``; returns the task summary.

    Writes ``experiment.yaml`` and TAO's ``status.json`` lines (STARTED, then SUCCESS or
    FAILURE with the reason) to ``<results_dir>/export/``. Raises :class:`ExportError`
    subclasses (their ``exit_code`` is the process exit status; the ``rtdetr`` CLI also writes
    the termination message) or the spec's ``SpecError`` (exit 2).
    """
    from rtdetr_trainer.export.staging import check_writable
    from rtdetr_trainer.export.task import run_export
    from rtdetr_trainer.results import TaskResults, failure_recorded

    spec.check_required("export")
    results = TaskResults(spec, "export")
    check_writable(results.dir, "results_dir")
    results.prepare()
    results.status("STARTED", "Starting RT-DETR export")
    with failure_recorded(results):
        summary = run_export(spec)
        results.status("SUCCESS", summary.message, artifacts=summary.artifacts)
    return summary
