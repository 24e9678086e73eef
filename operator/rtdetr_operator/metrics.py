"""The operator's Prometheus metrics: its own work, and what the objects it serves report.

Two halves, one registry:

* counters and histograms updated as the operator works: reconciles per kind and outcome, their
  durations, reconcile errors, work-queue depth and the time keys wait in the queue, and reads
  of training pods' progress lines;
* gauges computed at scrape time from the latest status the reconcilers wrote
  (:class:`StatusCollector`): objects per kind and phase, each training's progress, loss,
  learning rate and validation/evaluation mAP, each deployment pool's replicas and stream
  capacity. An object that is deleted (or leaves the served namespaces) is dropped, so the
  number of series follows the number of objects.

Names carry the ``rtdetr_`` prefix; docs/operator.md lists them and the chart's Grafana
dashboard (charts/rtdetr-operator/dashboards/) queries them.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rtdetr_operator.api.deployment import DEPLOYMENT
from rtdetr_operator.api.deployment_status import DeploymentPhase
from rtdetr_operator.api.training import TRAINING
from rtdetr_operator.api.training_status import PHASES

DEPLOYMENT_PHASES: tuple[str, ...] = get_args(DeploymentPhase)
#: Reconcile durations span a cached no-op (ms) to a slow API server (tens of seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def port(text: str) -> int:
    """An argparse type: a TCP port 1-65535, or 0 for "no metrics endpoint"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {value}")
    return value


class StatusCollector(Collector):
    """Gauges from the latest status of every served object (a scrape never calls the API)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[tuple[str, str, str], dict[str, Any]] = {}

    def observe(self, kind: str, namespace: str, name: str, status: dict[str, Any] | None) -> None:
        """The status just written (None: the object is gone or no longer served)."""
        with self._lock:
            if status is None:
                self._status.pop((kind, namespace, name), None)
            else:
                self._status[(kind, namespace, name)] = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            items = list(self._status.items())
        phases = GaugeMetricFamily(
            "rtdetr_operator_resources",
            "Served objects per kind and phase",
            labels=["kind", "phase"],
        )
        counts = {(TRAINING.kind, p): 0 for p in PHASES} | {
            (DEPLOYMENT.kind, p): 0 for p in DEPLOYMENT_PHASES
        }
        for (kind, _, _), st in items:
            key = (kind, str(st.get("phase") or "Pending"))
            counts[key] = counts.get(key, 0) + 1
        for (kind, phase), n in sorted(counts.items()):
            phases.add_metric([kind, phase], n)
        yield phases
        yield from _training_gauges([(k[1], k[2], st) for k, st in items if k[0] == TRAINING.kind])
        yield from _pool_gauges([(k[1], k[2], st) for k, st in items if k[0] == DEPLOYMENT.kind])


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


#: (metric, help, path into status.trainingProgress or status) of each training gauge.
TRAINING_GAUGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("rtdetr_training_progress_percent", "Share of the run's steps done", ("percent",)),
    ("rtdetr_training_epoch", "Epochs completed", ("epoch",)),
    ("rtdetr_training_epochs", "Epochs configured", ("numEpochs",)),
    ("rtdetr_training_eta_seconds", "Estimated seconds left in the training task", ("etaSeconds",)),
    ("rtdetr_training_loss", "Latest training loss", ("loss",)),
    ("rtdetr_training_learning_rate", "Current learning rate", ("learningRate",)),
    ("rtdetr_training_validation_map50", "mAP50 of the latest validation", ("validation", "mAP50")),
    ("rtdetr_training_validation_map", "mAP of the latest validation", ("validation", "mAP")),
)


def _dig(obj: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return float(obj) if isinstance(obj, int | float) and not isinstance(obj, bool) else None


def _training_gauges(items: list[tuple[str, str, dict[str, Any]]]) -> Iterator[GaugeMetricFamily]:
    labels = ["namespace", "name"]
    families = [(_gauge(n, d, labels), path) for n, d, path in TRAINING_GAUGES]
    evaluated = _gauge("rtdetr_training_map50", "mAP50 of the evaluated checkpoint", labels)
    restarts = _gauge("rtdetr_training_restarts", "Task groups recreated after a failure", labels)
    for ns, name, st in items:
        progress = st.get("trainingProgress") or {}
        for family, path in families:
            value = _dig(progress, path)
            if value is not None:
                family.add_metric([ns, name], value)
        m50 = _dig(st, ("metrics", "mAP50"))
        if m50 is not None:
            evaluated.add_metric([ns, name], m50)
        restarts.add_metric([ns, name], float(st.get("restarts") or 0))
    yield from (f for f, _ in families)
    yield evaluated
    yield restarts


def _pool_gauges(items: list[tuple[str, str, dict[str, Any]]]) -> Iterator[GaugeMetricFamily]:
    labels = ["namespace", "name", "pool"]
    ready = _gauge("rtdetr_deployment_pool_ready_replicas", "Ready Triton pods per pool", labels)
    desired = _gauge("rtdetr_deployment_pool_desired_replicas", "Desired pods per pool", labels)
    capacity = _gauge(
        "rtdetr_deployment_pool_capacity_streams",
        "Camera streams a pool's ready pods sustain (pools with a capacity figure)",
        labels,
    )
    for ns, name, st in items:
        for pool in st.get("pools") or []:
            key = [ns, name, str(pool.get("gpu") or pool.get("deployment") or "")]
            ready.add_metric(key, float(pool.get("readyReplicas") or 0))
            desired.add_metric(key, float(pool.get("desiredReplicas") or 0))
            if isinstance(pool.get("capacityStreams"), int):
                capacity.add_metric(key, float(pool["capacityStreams"]))
    yield from (ready, desired, capacity)


class OperatorMetrics:
    """Every metric of one operator process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "rtdetr_operator_reconcile",
            "Reconciles per kind and result (success, error)",
            ["kind", "result"],
            registry=r,
        )
        self.errors = Counter(
            "rtdetr_operator_reconcile_errors",
            "Reconciles that raised, per kind",
            ["kind"],
            registry=r,
        )
        self.duration = Histogram(
            "rtdetr_operator_reconcile_duration_seconds",
            "Seconds one reconcile took, per kind",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.depth = Gauge(
            "rtdetr_operator_workqueue_depth", "Keys waiting in a work queue", ["kind"], registry=r
        )
        self.wait = Histogram(
            "rtdetr_operator_workqueue_queue_duration_seconds",
            "Seconds a key waited in a work queue before a worker took it",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.progress_reads = Counter(
            "rtdetr_operator_progress_log_reads",
            "Reads of progress lines (running trainings, source downloads) through the pod "
            "log API, per result",
            ["result"],
            registry=r,
        )
        self.statuses = StatusCollector()
        r.register(self.statuses)
        for kind in (TRAINING.kind, DEPLOYMENT.kind):  # every series exists from the start
            for result in ("success", "error"):
                self.reconciles.labels(kind, result)
            self.errors.labels(kind)
            self.duration.labels(kind)
            self.wait.labels(kind)
        for result in ("ok", "failed"):
            self.progress_reads.labels(result)

    @contextmanager
    def reconciling(self, kind: str) -> Iterator[None]:
        """Count and time one reconcile of ``kind`` (an exception counts as an error)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.reconciles.labels(kind, "error").inc()
            self.errors.labels(kind).inc()
            raise
        else:
            self.reconciles.labels(kind, "success").inc()
        finally:
            self.duration.labels(kind).observe(time.perf_counter() - start)

    def watch(self, kind: str, queue: Any, reconciler: Any) -> None:
        """Report ``queue``'s depth and waits, and the statuses ``reconciler`` writes."""
        self.depth.labels(kind).set_function(lambda: float(len(queue)))
        queue.on_wait = self.wait.labels(kind).observe
        queue.on_forget = lambda key: self.statuses.observe(kind, key[0], key[1], None)
        reconciler.on_status = lambda ns, name, st: self.statuses.observe(kind, ns, name, st)
        reader = getattr(reconciler, "reader", None)
        if reader is not None:
            reader.on_read = lambda result: self.progress_reads.labels(result).inc()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``address:port`` from a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)
