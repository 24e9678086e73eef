"""Read a task's TaskSummary (its termination message) and fold it into the run's status.

train -> ``tasks.train.epoch/numEpochs`` and the checkpoint path; evaluate -> ``metrics`` (mAP,
mAP50, per-class AP50); export -> ONNX, FP16 ONNX, DeepStream and manifest paths. Artifact keys
are the summary's own (``onnx_fp16``) in camelCase (``onnxFp16``), so a new artifact a task
starts reporting shows up without an operator change.

A missing or malformed message is not fatal: the task's Job succeeded, so the run goes on with
what is known (the checkpoint then defaults to ``rtdetr_model_latest.pth``) and the caller posts
a Warning event. A summary whose status is FAILURE despite exit code 0 counts as a failure, and
a failed pod is described by the summary's own message when it left one (the Job and pod reading
itself is shared with RTDETRDeployment: :mod:`rtdetr_operator.jobs`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from rtdetr_operator.jobs import PodView
from rtdetr_spec.reporting import TaskSummary


@dataclass(frozen=True)
class SummaryResult:
    """A parsed termination message: the summary, or why there is none."""

    summary: TaskSummary | None
    problem: str | None


def parse_summary(message: str | None, task: str) -> SummaryResult:
    """Parse a task's termination message as a TaskSummary for ``task``."""
    if not message or not message.strip():
        return SummaryResult(None, "the task wrote no summary (empty termination message)")
    try:
        summary = TaskSummary.model_validate_json(message)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<message>"
        snippet = message.strip().replace("\n", " ")[:120]
        return SummaryResult(None, f"malformed task summary ({where}: {first['msg']}): {snippet!r}")
    if summary.task != task:
        return SummaryResult(None, f"task summary is for {summary.task!r}, expected {task!r}")
    return SummaryResult(summary, None)


def failure_text(pod: PodView) -> str:
    """One line saying how a pod failed, with the task's own message when there is one."""
    head = f"pod {pod.name}"
    if pod.index is not None:
        head += f" (node {pod.index})"
    code = f"exit code {pod.exit_code}" if pod.exit_code is not None else "failed"
    if pod.termination_reason and pod.termination_reason not in ("Error", "Completed"):
        code += f", {pod.termination_reason}"
    detail = pod.message or ""
    # A log tail (FallbackToLogsOnError) or free text is shown as it is.
    with contextlib.suppress(ValidationError):
        detail = TaskSummary.model_validate_json(detail).message or ""
    detail = " ".join(detail.split())[-300:]
    return f"{head}: {code}" + (f": {detail}" if detail else "")


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
