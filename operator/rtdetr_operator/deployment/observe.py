"""Read build Jobs and Triton Deployments into the few facts the rollout decides on.

Pure functions over API objects. Jobs and their pods are read with the training's
:func:`~rtdetr_operator.training.observe.job_view` (same container name, same termination
message contract); what a build Job *reports* is a
:class:`~rtdetr_serving.task_summary.ServingTaskSummary`. A pool's Deployment is *rolled out*
on a revision when the Deployment controller has seen its latest template, every pod is of that
template and as many are available as it wants: from then on no pod of an older revision serves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rtdetr_operator.deployment.names import LABEL_REVISION
from rtdetr_operator.training.observe import STUCK_WAITING, JobView, PodView, Stuck, parse_time
from rtdetr_serving.task_summary import ServingTaskSummary


@dataclass(frozen=True)
class RolloutView:
    """A pool's Deployment as the rollout sees it."""

    name: str
    revision: str | None
    generation: int
    observed_generation: int
    desired: int
    replicas: int
    updated: int
    ready: int
    available: int
    stuck_message: str | None
    deleting: bool

    @property
    def rolled_out(self) -> bool:
        return (
            not self.deleting
            and self.observed_generation >= self.generation
            and self.updated >= self.desired
            and self.replicas == self.updated
            and self.available >= self.desired
        )


def rollout_view(deployment: dict[str, Any]) -> RolloutView:
    meta = deployment["metadata"]
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    stuck = None
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "Progressing"
            and cond.get("status") == "False"
            and cond.get("reason") == "ProgressDeadlineExceeded"
        ):
            stuck = cond.get("message") or "progress deadline exceeded"
    return RolloutView(
        name=meta["name"],
        revision=template_labels.get(LABEL_REVISION),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        stuck_message=stuck,
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True)
class Reported:
    """What a finished build Job said: its summary, or why there is none."""

    summary: ServingTaskSummary | None
    problem: str | None


def reported(view: JobView, task: str) -> Reported:
    """The summary in the succeeded pod's termination message, checked to be ``task``'s."""
    leader = view.leader()
    message = leader.message if leader else None
    if not message or not message.strip():
        return Reported(None, f"Job {view.name} wrote no summary (empty termination message)")
    try:
        summary = ServingTaskSummary.model_validate_json(message)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<message>"
        snippet = " ".join(message.split())[:160]
        return Reported(
            None, f"Job {view.name}: malformed summary ({where}: {first['msg']}): {snippet!r}"
        )
    if summary.task != task:
        return Reported(None, f"Job {view.name} reported task {summary.task!r}, not {task!r}")
    if summary.status != "SUCCESS":
        return Reported(None, f"Job {view.name}: {summary.message or 'reported FAILURE'}")
    return Reported(summary, None)


def failure(view: JobView) -> str:
    """One line saying why a build Job failed: the command's own message when it left one."""
    pod: PodView | None = view.first_failure()
    if pod is None:
        return f"Job {view.name} failed: {view.job_message or 'no pod ran'}"
    detail = pod.message or ""
    with contextlib.suppress(ValidationError):
        detail = ServingTaskSummary.model_validate_json(detail).message or ""
    detail = " ".join(detail.split())[-400:] or view.job_message
    code = f"exit code {pod.exit_code}" if pod.exit_code is not None else "failed"
    if pod.termination_reason and pod.termination_reason not in ("Error", "Completed"):
        code += f", {pod.termination_reason}"
    return f"Job {view.name} (pod {pod.name}, {code})" + (f": {detail}" if detail else "")


def stuck_pod(pod: dict[str, Any]) -> Stuck | None:
    """A pod that cannot start on its own (unschedulable, image not pullable...), any container."""
    meta, status = pod["metadata"], pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return None
    since = parse_time(status.get("startTime") or meta.get("creationTimestamp"))
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return Stuck(
                meta["name"],
                "Unschedulable",
                f"pod {meta['name']} cannot be scheduled: "
                f"{cond.get('message') or 'no node fits the pod'}",
                parse_time(cond.get("lastTransitionTime")) or since,
            )
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_WAITING:
            return Stuck(
                meta["name"],
                waiting["reason"],
                f"pod {meta['name']} cannot start container {cs.get('name')} "
                f"({waiting['reason']}): {waiting.get('message') or waiting['reason']}",
                since,
            )
    return None
