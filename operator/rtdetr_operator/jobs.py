"""Jobs that run one of our command-line tools: how their container is built, how they are read.

Every Job either kind creates (training, evaluation and export for an RTDETRTraining; the
repository and engine builds for an RTDETRDeployment) runs ``rtdetr`` or ``rtdetr-serve`` in a
container named :data:`CONTAINER`, and the tool reports through the container's termination
message: a summary JSON written to ``RTDETR_TERMINATION_LOG`` or, when the container crashed
before writing it, the tail of its log (``terminationMessagePolicy: FallbackToLogsOnError``).
:func:`task_container` builds that contract; :func:`job_view` reads it back.

Reading is pure, over API objects (dicts as the API server returns them). A Job is *succeeded*
when the Job says so, *failed* as soon as any of its pods failed (before the Job controller
notices, so a group restart starts a few seconds earlier), and *stuck* when a pod cannot be
scheduled or cannot start its container, with the scheduler's or kubelet's own words as the
reason; how long "stuck" may last is each planner's grace period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtdetr_operator.children import (
    SCRATCH,
    restricted_container_security,
    scratch_env,
    scratch_mount,
)
from rtdetr_operator.conditions import parse_time
from rtdetr_spec.reporting import TERMINATION_LOG, TERMINATION_LOG_ENV

#: Container running our tool in every Job the operator creates.
CONTAINER = "rtdetr"
#: Set by the Job controller on pods of Indexed Jobs (a training's NODE_RANK is read from it).
ANNOTATION_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
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


def task_container(
    image: str,
    pull_policy: str,
    command: list[str],
    mounts: list[dict[str, Any]],
    *,
    env: list[dict[str, Any]] | None = None,
    extra_env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The :data:`CONTAINER` of a Job: ``command`` reports through its termination message.

    ``env`` comes before the reporting variables, ``extra_env`` (a user's) after them. The
    pod must have the scratch volume (children.scratch_volume): it is mounted at /tmp, the
    working directory, as the root filesystem is read-only.
    """
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": command,
        "env": [
            *(env or []),
            {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *scratch_env(),
            *(extra_env or []),
        ],
        "workingDir": SCRATCH,
        "volumeMounts": [*mounts, scratch_mount()],
        "securityContext": restricted_container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        # The tool writes its summary there; a crash before that leaves the log tail instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


@dataclass(frozen=True)
class Stuck:
    """A pod that cannot make progress on its own, and since when."""

    pod: str
    reason: str
    message: str
    since: datetime | None


def unschedulable(pod: dict[str, Any]) -> Stuck | None:
    """The scheduler's verdict on a pod it cannot place (since the condition last changed)."""
    meta, status = pod["metadata"], pod.get("status") or {}
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
                parse_time(cond.get("lastTransitionTime")),
            )
    return None


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
    """A pod of one of our Jobs, as seen through its :data:`CONTAINER`."""
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
    return PodView(
        name=meta["name"],
        index=int(index) if index is not None and str(index).isdigit() else None,
        phase=phase,
        deleting=bool(meta.get("deletionTimestamp")),
        exit_code=exit_code,
        termination_reason=reason,
        message=message,
        stuck=unschedulable(pod) or stuck,
    )


@dataclass(frozen=True)
class JobView:
    """One of our Jobs and its pods."""

    name: str
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
    """``job`` and those of ``pods`` it owns (by owner reference uid)."""
    meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    failed = conditions.get("Failed") or conditions.get("FailureTarget") or {}
    complete = conditions.get("Complete") or conditions.get("SuccessCriteriaMet") or {}
    uid = meta.get("uid")
    mine = [
        pod_view(p)
        for p in pods
        if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
    ]
    return JobView(
        name=meta["name"],
        deleting=bool(meta.get("deletionTimestamp")),
        expected=int(spec.get("completions") or 1),
        succeeded=complete.get("status") == "True",
        job_failed=failed.get("status") == "True",
        job_message=f"{failed.get('reason', '')}: {failed.get('message', '')}".strip(": "),
        pods=sorted(mine, key=lambda p: p.name),
        created=parse_time(meta.get("creationTimestamp")),
    )
