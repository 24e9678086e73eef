"""Fold a finished task's TaskSummary (its termination message) into the run's status.

train -> ``tasks.train.epoch/numEpochs`` and the checkpoint path; evaluate -> ``metrics`` (mAP,
mAP50, per-class AP50); export -> ONNX, FP16 ONNX, DeepStream and manifest paths. Artifact keys
are the summary's own (``onnx_fp16``) in camelCase (``onnxFp16``), so a new artifact a task
starts reporting shows up without an operator change.

A missing or malformed message is not fatal: the task's Job succeeded, so the run goes on with
what is known (the checkpoint then defaults to ``rtdetr_model_latest.pth``) and the caller posts
a Warning event. A summary whose status is FAILURE despite exit code 0 counts as a failure.
"""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel

from rtdetr_operator.training.observe import parse_summary
from rtdetr_spec.artifacts import TaskSummary


def apply_summary(
    status: dict[str, Any], task: str, message: str | None
) -> tuple[str | None, str | None]:
    """Update ``status`` in place from ``task``'s termination message.

    Returns:
        (problem, reported_failure): why no summary could be used (or None), and the task's own
        failure message when it reported FAILURE (or None).
    """
    parsed = parse_summary(message, task)
    summary = parsed.summary
    if summary is None:
        return parsed.problem, None
    if summary.status == "FAILURE":
        return None, summary.message or f"{task} reported FAILURE"
    record = status.setdefault("tasks", {}).setdefault(task, {})
    if summary.message:
        record["message"] = summary.message[:512]
    if summary.epoch is not None:
        record["epoch"] = summary.epoch
    if summary.num_epochs is not None:
        record["numEpochs"] = summary.num_epochs
    if task == "evaluate":
        status["metrics"] = _metrics(summary)
    artifacts = status.setdefault("artifacts", {})
    for key, path in summary.artifacts.items():
        artifacts[to_camel(key)] = path
    return None, None


def _metrics(summary: TaskSummary) -> dict[str, Any]:
    m = summary.metrics
    out: dict[str, Any] = {}
    for src, dst in (("mAP", "mAP"), ("mAP50", "mAP50")):
        value = m.get(src)
        if isinstance(value, int | float):
            out[dst] = round(float(value), 6)
    per_class = m.get("per_class_AP50")
    if isinstance(per_class, dict):
        out["perClassAP50"] = {
            str(k): (round(float(v), 6) if isinstance(v, int | float) else None)
            for k, v in per_class.items()
        }
    return out


def success_message(status: dict[str, Any]) -> str:
    """One line for a Succeeded run: epochs, mAP50 and the exported model."""
    parts = []
    train = (status.get("tasks") or {}).get("train") or {}
    if train.get("epoch") is not None:
        parts.append(f"trained {train['epoch']}/{train.get('numEpochs', '?')} epochs")
    else:
        parts.append("trained")
    m50 = (status.get("metrics") or {}).get("mAP50")
    if m50 is not None:
        parts.append(f"mAP50 {m50:.3f}")
    art = status.get("artifacts") or {}
    model = art.get("onnxFp16") or art.get("onnx")
    if model:
        parts.append(f"exported {model}")
    return ", ".join(parts)
