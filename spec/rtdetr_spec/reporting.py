"""How every task Job reports its result to the operator: the termination-message contract.

A Job the operator creates (train, evaluate, export; repository, gen_trt_engine) ends by
writing one compact JSON object as its container's termination message; the kubelet copies it
into the pod's status (``state.terminated.message``), where the operator reads it. No shared
volume or API permission is needed to learn a result. The pieces, here once for all of them:

* where: ``$RTDETR_TERMINATION_LOG`` (:data:`TERMINATION_LOG_ENV`; the operator sets it to
  :data:`TERMINATION_LOG`, the container's ``terminationMessagePath``), else
  ``/dev/termination-log`` when running in a pod and it is writable, else nowhere;
* how much: Kubernetes keeps at most :data:`MESSAGE_LIMIT` bytes; a report shrinks itself to fit
  (:meth:`TaskReport.slimmed`) before being cut;
* what: :class:`TaskReport` (task, status, message), which :class:`TaskSummary` (the trainer's
  tasks) and ``rtdetr_serving.task_summary.ServingTaskSummary`` extend;
* how: :func:`write_termination_message`, the only writer. The kubelet bind-mounts the
  termination log as a file, so that path is written in place (a rename over a mount point
  fails); any other path gets a temp file and a rename. A write that fails is a warning, never
  the task's failure: the exit code is the result, and the operator reports a missing summary.

Torch-free (pydantic only): the operator, serving and trainer images all import it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtdetr_spec.artifacts import atomic_write_text

log = logging.getLogger(__name__)

#: The variable naming the file a task writes its report to.
TERMINATION_LOG_ENV = "RTDETR_TERMINATION_LOG"
#: The kubelet's default ``terminationMessagePath`` (the operator sets it explicitly too).
TERMINATION_LOG = "/dev/termination-log"
#: Kubernetes keeps at most 4096 bytes of a termination message.
MESSAGE_LIMIT = 4096


class TaskReport(BaseModel):
    """What every task reports: which task, whether it succeeded, and one line why (not)."""

    model_config = ConfigDict(extra="ignore")

    task: str
    status: Literal["SUCCESS", "FAILURE"]
    message: str | None = None

    def slimmed(self, overflow: int) -> TaskReport:
        """A smaller copy when the JSON is ``overflow`` bytes too long: the message is cut."""
        if not self.message:
            return self
        keep = max(0, len(self.message.encode()) - overflow - 3)
        short = self.message.encode()[:keep].decode(errors="ignore") + "..."
        return self.model_copy(update={"message": short})

    def to_message(self, limit: int = MESSAGE_LIMIT) -> str:
        """Compact JSON within ``limit`` bytes (:meth:`slimmed` first, then a hard cut)."""
        text = self.model_dump_json(exclude_none=True)
        overflow = len(text.encode()) - limit
        if overflow > 0:
            text = self.slimmed(overflow).model_dump_json(exclude_none=True)
        return text.encode()[:limit].decode(errors="ignore")


class TaskSummary(TaskReport):
    """A trainer task's report (train, evaluate, inference, export).

    Metrics and artifact paths, never logs. The operator folds it into
    ``RTDETRTraining.status``.
    """

    task: Literal["train", "evaluate", "inference", "export", "gen_trt_engine"]
    epoch: int | None = None
    num_epochs: int | None = None
    #: e.g. {"mAP": 0.51, "mAP50": 0.83, "per_class_AP50": {"person": 0.9, ...}}
    metrics: dict[str, float | dict[str, float | None] | None] = Field(default_factory=dict)
    #: e.g. {"checkpoint": "/results/train/model_epoch_029.pth", "onnx": "/results/export/m.onnx"}
    artifacts: dict[str, str] = Field(default_factory=dict)

    def slimmed(self, overflow: int) -> TaskReport:
        """Per-class metrics go first (the operator can read them from metrics.json)."""
        nested = {k: v for k, v in self.metrics.items() if not isinstance(v, dict)}
        return self.model_copy(update={"metrics": nested})


def termination_log_path() -> Path | None:
    """Where the report goes: ``$RTDETR_TERMINATION_LOG``, else the pod's termination log."""
    explicit = os.environ.get(TERMINATION_LOG_ENV)
    if explicit:
        return Path(explicit)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.access(TERMINATION_LOG, os.W_OK):
        return Path(TERMINATION_LOG)
    return None


def write_termination_message(report: TaskReport) -> Path | None:
    """Write ``report`` where Kubernetes reads it; the path, or None (nowhere, or it failed)."""
    path = termination_log_path()
    if path is None:
        return None
    text = report.to_message()
    try:
        if path == Path(TERMINATION_LOG):
            path.write_text(text)
        else:
            atomic_write_text(path, text)
    except OSError as e:
        log.warning("could not write the termination message to %s: %s", path, e)
        return None
    return path
