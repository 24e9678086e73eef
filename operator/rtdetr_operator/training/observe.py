"""Read Jobs and Pods into the few facts the state machine decides on.

Pure functions over API objects (dicts as the API server returns them). A task's Job is
*succeeded* when the Job says so, *failed* as soon as any of its pods failed (before the Job
controller notices, so a group restart starts a few seconds earlier), and *stuck* when a pod has
been unschedulable or unable to start its container for longer than a grace period, with the
scheduler's or kubelet's own words as the reason.

Task results come back through the container's termination message: a TaskSummary JSON written
by the task (``RTDETR_TERMINATION_LOG``), or, when the container crashed before writing it, the
tail of its log (``terminationMessagePolicy: FallbackToLogsOnError``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from rtdetr_operator.conditions import parse_time
from rtdetr_operator.training.names import (
    ANNOTATION_COMPLETION_INDEX,
    CONTAINER,
    LABEL_ATTEMPT,
    LABEL_TASK,
)
from rtdetr_spec.artifacts import TaskSummary

#: Container waiting reasons that never resolve by themselves.
STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)


@dataclass(frozen=True)
class Stuck:
    """A pod that cannot make progress on its own, and since when."""

    pod: str
    reason: str
    message: str
    since: datetime | None


@dataclass(frozen=True)
class PodView:
    name: str
    index: int | None
    phase: str
    deleting: bool
    exit_code: int | None = None
    termination_reason: str | None = None
    message: str | None = None
    stuck: Stuck | None = None

    @property
    def running(self) -> bool:
        return self.phase == "Running" and not self.deleting


def pod_view(pod: dict[str, Any]) -> PodView:
    meta, status = pod["metadata"], pod.get("status") or {}
    index = (meta.get("annotations") or {}).get(ANNOTATION_COMPLETION_INDEX)
    phase = status.get("phase", "Pending")
    exit_code = reason = message = None
    stuck = None
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get(
            "terminated"
        )
        if term:
            exit_code, reason = term.get("exitCode"), term.get("reason")
            message = term.get("message")
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_WAITING:
            stuck = Stuck(
                meta["name"],
                waiting["reason"],
                f"pod {meta['name']} cannot start its container ({waiting['reason']}): "
                f"{waiting.get('message') or waiting['reason']}",
                parse_time(status.get("startTime") or meta.get("creationTimestamp")),
            )
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            stuck = Stuck(
                meta["name"],
                "Unschedulable",
                f"pod {meta['name']} cannot be scheduled: "
                f"{cond.get('message') or 'no node fits the pod'}",
                parse_time(cond.get("lastTransitionTime")),
            )
    return PodView(
        name=meta["name"],
        index=int(index) if index is not None and str(index).isdigit() else None,
        phase=phase,
        deleting=bool(meta.get("deletionTimestamp")),
        exit_code=exit_code,
        termination_reason=reason,
        message=message,
        stuck=stuck,
    )


@dataclass(frozen=True)
class JobView:
    """A task's Job and its pods."""

    name: str
    task: str | None
    attempt: int | None
    deleting: bool
    expected: int
    succeeded: bool
    job_failed: bool
    job_message: str
    pods: list[PodView] = field(default_factory=list)
    created: datetime | None = None

    @property
    def active(self) -> bool:
        return not (self.succeeded or self.failed)

    @property
    def failed_pods(self) -> list[PodView]:
        return [p for p in self.pods if p.phase == "Failed"]

    @property
    def failed(self) -> bool:
        return not self.succeeded and (self.job_failed or bool(self.failed_pods))

    @property
    def running(self) -> int:
        return sum(p.running for p in self.pods)

    def first_failure(self) -> PodView | None:
        """The pod whose failure brought the group down (a SIGTERM'd peer is not the cause)."""
        failed = sorted(self.failed_pods, key=lambda p: (p.exit_code == 143, p.deleting, p.name))
        return failed[0] if failed else None

    def leader(self) -> PodView | None:
        """Pod of completion index 0 (rank 0 writes the task summary)."""
        done = [p for p in self.pods if p.phase == "Succeeded"]
        for p in sorted(done, key=lambda p: (p.index is None, p.index or 0)):
            return p
        return None

    def stuck(self) -> Stuck | None:
        if not self.pods and self.active and not self.deleting:
            # Quota, an admission webhook or PodSecurity refused every pod (the Job's events
            # say which); without this the run would sit in Pending with nothing to look at.
            return Stuck(
                self.name,
                "NoPods",
                f"Job {self.name} has no pods; `kubectl describe job {self.name}` shows why "
                "(quota, admission webhook, PodSecurity)",
                self.created,
            )
        found = [p.stuck for p in self.pods if p.stuck and not p.deleting]
        return min(found, key=lambda s: s.since or datetime.max) if found else None


def job_view(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobView:
    meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    labels = meta.get("labels") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    failed = conditions.get("Failed") or conditions.get("FailureTarget") or {}
    complete = conditions.get("Complete") or conditions.get("SuccessCriteriaMet") or {}
    uid = meta.get("uid")
    mine = [
        pod_view(p)
        for p in pods
        if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
    ]
    attempt = labels.get(LABEL_ATTEMPT)
    return JobView(
        name=meta["name"],
        task=labels.get(LABEL_TASK),
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
        deleting=bool(meta.get("deletionTimestamp")),
        expected=int(spec.get("completions") or 1),
        succeeded=complete.get("status") == "True",
        job_failed=failed.get("status") == "True",
        job_message=f"{failed.get('reason', '')}: {failed.get('message', '')}".strip(": "),
        pods=sorted(mine, key=lambda p: p.name),
        created=parse_time(meta.get("creationTimestamp")),
    )


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
