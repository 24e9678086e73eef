"""Live training progress: read rank 0's progress lines from its pod log, fold them into status.

Transport (why, in docs/operator.md): ``rtdetr train``'s rank 0 prints
:mod:`rtdetr_spec.progress` lines; the operator reads the tail of that one pod's log through the
pod log API. The training pods need no API permissions, and the operator's cost is bounded: only
the leader pod of a *running* training Job is read, at most once per ``interval`` seconds per
training, at most :data:`rtdetr_spec.progress.MAX_SCAN_BYTES` per read.

:class:`rtdetr_operator.pod_logs.LogReader` is the I/O half (rate limit, the API call,
tolerance of a kubelet that has no log to give, or no progress line in it; it also follows the fetch
steps that run before training starts); :func:`fold` is pure: reports in,
``status.trainingProgress`` and one Normal ``Validated`` event per new validation out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rtdetr_operator.conditions import timestamp
from rtdetr_operator.jobs import ANNOTATION_COMPLETION_INDEX
from rtdetr_operator.training.names import LABEL_TASK
from rtdetr_spec.progress import ProgressReport, format_eta

#: Status field the reports are folded into.
FIELD = "trainingProgress"


def leader_pod(pods: list[dict[str, Any]], job: str) -> dict[str, Any] | None:
    """The completion-index-0 pod of training Job ``job`` (rank 0 prints progress), while it
    runs or once it succeeded (its last lines: the final epoch and validation)."""
    for pod in pods:
        meta = pod["metadata"]
        owners = {o.get("name") for o in meta.get("ownerReferences") or []}
        if (
            job in owners
            and (meta.get("labels") or {}).get(LABEL_TASK) == "train"
            and (meta.get("annotations") or {}).get(ANNOTATION_COMPLETION_INDEX) == "0"
            and (pod.get("status") or {}).get("phase") in ("Running", "Succeeded")
            and not meta.get("deletionTimestamp")
        ):
            return pod
    return None


def fold(
    status: dict[str, Any], reports: list[ProgressReport], now: datetime
) -> list[tuple[str, str]]:
    """Put the newest of ``reports`` into ``status``; (reason, message) of new validations."""
    if not reports:
        return []
    old = status.get(FIELD) or {}
    seen = int((old.get("validation") or {}).get("epoch") or 0)
    events: list[tuple[str, str]] = []
    for r in reports:
        v = r.validation
        if v is not None and v.epoch > seen:
            seen = v.epoch
            m50 = "n/a" if v.m_ap50 is None else f"{v.m_ap50:.4f}"
            m = "n/a" if v.m_ap is None else f"{v.m_ap:.4f}"
            events.append(("Validated", f"epoch {v.epoch}/{r.num_epochs}: mAP50 {m50}, mAP {m}"))
    r = reports[-1]
    if r.time is not None and old.get("reportTime") == timestamp(r.time):
        return events  # the same line as last time: no status write for nothing new
    out: dict[str, Any] = {
        "epoch": r.epoch,
        "numEpochs": r.num_epochs,
        "epochs": f"{r.epoch}/{r.num_epochs}",
        "step": r.step,
        "stepsPerEpoch": r.steps_per_epoch,
        "globalStep": r.global_step,
        "percent": int(r.percent),
        "updateTime": timestamp(now),
    }
    if r.eta_seconds is not None:
        out["etaSeconds"] = int(r.eta_seconds)
        out["eta"] = format_eta(r.eta_seconds)
    if r.loss is not None:
        out["loss"] = round(r.loss, 6)
    if r.learning_rate is not None:
        out["learningRate"] = r.learning_rate
    if r.time is not None:
        out["reportTime"] = timestamp(r.time)
    if r.validation is not None:
        out["validation"] = r.validation.model_dump(by_alias=True, exclude_none=True)
    elif old.get("validation"):
        out["validation"] = old["validation"]  # a resumed process has not validated yet
    status[FIELD] = out
    return events


def finished(status: dict[str, Any]) -> None:
    """The training task succeeded: 100%, every epoch done, nothing left to wait for."""
    progress = status.get(FIELD)
    if not progress:
        return
    total = progress.get("numEpochs")
    progress.update(percent=100, etaSeconds=0, eta="0s")
    if total:
        progress.update(epoch=total, epochs=f"{total}/{total}")
