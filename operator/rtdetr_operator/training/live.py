"""Live training progress: read rank 0's progress lines from its pod log, fold them into status.

The same reader follows a download before training starts: the fetch step running in the
leader pod prints :mod:`rtdetr_spec.sources.report` lines, shown in ``status.sources``
(training/sources.py).

Transport (why, in docs/operator.md): ``rtdetr train``'s rank 0 prints
:mod:`rtdetr_spec.progress` lines; the operator reads the tail of that one pod's log through the
pod log API. The training pods need no API permissions, and the operator's cost is bounded: only
the leader pod of a *running* training Job is read, at most once per ``interval`` seconds per
training, at most :data:`rtdetr_spec.progress.MAX_SCAN_BYTES` per read.

:class:`LogReader` is the I/O half (rate limit, the API call, tolerance of a kubelet that has no
log to give, as on simulated nodes); :func:`fold` is pure: reports in, ``status.trainingProgress``
and one Normal ``Validated`` event per new validation out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from urllib3.exceptions import HTTPError

from rtdetr_operator.conditions import timestamp
from rtdetr_operator.fetch_steps import FETCH_PREFIX
from rtdetr_operator.jobs import ANNOTATION_COMPLETION_INDEX, CONTAINER
from rtdetr_operator.kube import ApiError, KubeApi
from rtdetr_operator.training.names import LABEL_TASK
from rtdetr_spec.progress import MAX_SCAN_BYTES, ProgressReport, format_eta, parse_log
from rtdetr_spec.sources import report

log = logging.getLogger(__name__)

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


def fetching_step(pods: list[dict[str, Any]], job: str) -> tuple[dict[str, Any], str] | None:
    """``(pod, container)``: the fetch step now running in the completion-index-0 pod of
    training Job ``job`` (every pod fetches the same sources; the first one's is shown)."""
    for pod in pods:
        meta = pod["metadata"]
        owners = {o.get("name") for o in meta.get("ownerReferences") or []}
        if (
            job not in owners
            or (meta.get("annotations") or {}).get(ANNOTATION_COMPLETION_INDEX) != "0"
            or meta.get("deletionTimestamp")
        ):
            continue
        for st in (pod.get("status") or {}).get("initContainerStatuses") or []:
            name = str(st.get("name", ""))
            if name.startswith(FETCH_PREFIX) and "running" in (st.get("state") or {}):
                return pod, name
    return None


class LogReader:
    """Reads progress lines from leader pods, at most once per ``interval`` s per training."""

    def __init__(
        self, api: KubeApi, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api, self.interval, self.clock = api, interval, clock
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # reconciles of different trainings run in threads
        #: Reads done and reads that failed; ``on_read`` is told "ok" or "failed" (metrics.py).
        self.reads = self.failures = 0
        self.on_read: Callable[[str], None] | None = None

    def due(self, namespace: str, name: str) -> bool:
        with self._lock:
            last = self._last.get((namespace, name))
            return last is None or self.clock() - last >= self.interval

    def read(
        self, namespace: str, name: str, pod: dict[str, Any], *, final: bool = False
    ) -> list[ProgressReport]:
        """The reports in ``pod``'s log tail ([] when not due or the log cannot be read).

        ``final``: the pod has ended; read it now whatever the rate limit says (once: the
        training's status then records the task as done and it is not read again).
        """
        text = self._tail(namespace, name, pod, CONTAINER, MAX_SCAN_BYTES, final)
        return [] if text is None else parse_log(text)

    def read_fetch(
        self, namespace: str, name: str, pod: dict[str, Any], container: str
    ) -> report.FetchProgress | None:
        """The newest progress line of the fetch step ``container`` (None when not due, none
        printed yet, or the log cannot be read)."""
        text = self._tail(namespace, name, pod, container, report.MAX_SCAN_BYTES, False)
        return None if text is None else report.latest(text)

    def _tail(
        self,
        namespace: str,
        name: str,
        pod: dict[str, Any],
        container: str,
        limit: int,
        final: bool,
    ) -> str | None:
        """The end of ``container``'s log in ``pod`` when a read is due (None otherwise)."""
        key = (namespace, name)
        with self._lock:
            last = self._last.get(key)
            if not final and last is not None and self.clock() - last < self.interval:
                return None
            self._last[key] = self.clock()
            self.reads += 1
        try:
            text = self.api.pod_log(namespace, pod["metadata"]["name"], container, limit)
        except (ApiError, HTTPError, OSError) as e:
            # A node whose kubelet serves no logs or cannot be reached (a simulated node, a
            # partition: the read times out), or a pod just gone.
            with self._lock:
                self.failures += 1
            log.debug("no log from pod %s/%s: %s", namespace, pod["metadata"]["name"], e)
            self._told("failed")
            return None
        self._told("ok")
        return text

    def _told(self, result: str) -> None:
        if self.on_read is not None:
            self.on_read(result)

    def forget(self, namespace: str, name: str) -> None:
        """The training is not running (or gone): drop its rate-limit entry."""
        with self._lock:
            self._last.pop((namespace, name), None)


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
