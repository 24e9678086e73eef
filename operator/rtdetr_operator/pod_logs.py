"""Reading what our pods print, for status: the one place the operator reads pod logs.

Two things are followed this way, both without giving the pods any API permission (why, in
docs/operator.md, "Live progress"): a running training's rank-0 progress lines
(rtdetr_spec.progress, folded by training/live.py) and the progress lines of a fetch step, the
init container that downloads a source URI before a task starts (rtdetr_spec.sources.report),
shown in an RTDETRTraining's ``status.sources`` and an RTDETRDeployment's ``status.source``.

:class:`LogReader` bounds the cost: at most one read per ``interval`` seconds per custom resource
(whatever it reads), a bounded tail per read, and a kubelet that has no log to give (one that
serves none, a partition, a pod just gone) is counted and otherwise ignored.
:func:`running_fetch_step` is pure: which fetch container of a Job's pods is downloading now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from urllib3.exceptions import HTTPError

from rtdetr_operator.fetch_steps import FETCH_PREFIX
from rtdetr_operator.jobs import ANNOTATION_COMPLETION_INDEX, CONTAINER
from rtdetr_operator.kube import ApiError, KubeApi
from rtdetr_spec.progress import MAX_SCAN_BYTES, ProgressReport, parse_log
from rtdetr_spec.sources import report

log = logging.getLogger(__name__)


def running_fetch_step(pods: list[dict[str, Any]], job: str) -> tuple[dict[str, Any], str] | None:
    """``(pod, container)``: a fetch step now running in a pod of Job ``job``.

    Every pod of a multi-node training fetches the same sources; the completion-index-0 pod's
    step is the one shown (then the first by name, for a Job that is not indexed).
    """
    owned = [
        p
        for p in pods
        if job in {o.get("name") for o in p["metadata"].get("ownerReferences") or []}
        and not p["metadata"].get("deletionTimestamp")
    ]

    def order(pod: dict[str, Any]) -> tuple[bool, str]:
        index = (pod["metadata"].get("annotations") or {}).get(ANNOTATION_COMPLETION_INDEX)
        return index != "0", str(pod["metadata"].get("name", ""))

    for pod in sorted(owned, key=order):
        for st in (pod.get("status") or {}).get("initContainerStatuses") or []:
            name = str(st.get("name", ""))
            if name.startswith(FETCH_PREFIX) and "running" in (st.get("state") or {}):
                return pod, name
    return None


class LogReader:
    """Reads log tails of our pods, at most once per ``interval`` s per custom resource."""

    def __init__(
        self, api: KubeApi, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api, self.interval, self.clock = api, interval, clock
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # reconciles of different resources run in threads
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
        """The training progress reports in ``pod``'s log tail ([] when not due or the log
        cannot be read).

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

    def forget(self, namespace: str, name: str) -> None:
        """Nothing of this resource is being followed now (or it is gone): drop its entry."""
        with self._lock:
            self._last.pop((namespace, name), None)

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
            # A node whose kubelet serves no logs or cannot be reached (a partition: the
            # read times out), or a pod just gone.
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
