"""The operator's metrics without a cluster: a real HTTP endpoint, a real work queue."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from rtdetr_operator.api.deployment import DEPLOYMENT as DEPLOYMENT_NAMES
from rtdetr_operator.api.training import TRAINING as TRAINING_NAMES
from rtdetr_operator.metrics import OperatorMetrics
from rtdetr_operator.workqueue import WorkQueue
from tests.operator.metrics_support import dashboard_metrics, scrape
from tests.support import free_port

#: The ``kind`` label of each kind's series.
TRAINING, DEPLOYMENT = TRAINING_NAMES.kind, DEPLOYMENT_NAMES.kind

TRAINING_STATUS: dict[str, Any] = {
    "phase": "Training",
    "restarts": 1,
    "trainingProgress": {
        "epoch": 3,
        "numEpochs": 30,
        "epochs": "3/30",
        "percent": 10,
        "etaSeconds": 5400,
        "loss": 17.25,
        "learningRate": 1e-4,
        "validation": {"epoch": 3, "mAP": 0.41, "mAP50": 0.72},
    },
}
DEPLOYMENT_STATUS: dict[str, Any] = {
    "phase": "Ready",
    "pools": [
        {"gpu": "H100", "readyReplicas": 2, "desiredReplicas": 3, "capacityStreams": 96},
        {"gpu": "CPU", "readyReplicas": 1, "desiredReplicas": 1},
    ],
}


def value(found: dict[str, Any], fam: str, sample: str | None = None, **labels: str) -> float:
    hits = [
        v
        for name, lab, v in found[fam]
        if (sample is None or name == sample) and all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(hits) == 1, (fam, labels, found[fam])
    return hits[0]


@pytest.fixture
def served() -> tuple[OperatorMetrics, str]:
    metrics = OperatorMetrics()
    port = free_port()
    metrics.serve(port, "127.0.0.1")
    return metrics, f"http://127.0.0.1:{port}/metrics"


def test_every_dashboard_metric_is_served_with_the_statuses_values(served) -> None:
    metrics, url = served
    metrics.statuses.observe(TRAINING, "team-a", "wh", TRAINING_STATUS)
    metrics.statuses.observe(
        TRAINING, "team-a", "done", {"phase": "Succeeded", "metrics": {"mAP50": 0.87}}
    )
    metrics.statuses.observe(DEPLOYMENT, "team-a", "dock", DEPLOYMENT_STATUS)
    found = scrape(url)
    missing = dashboard_metrics() - set(found)
    assert not missing, f"the dashboard queries metrics the operator does not serve: {missing}"
    assert len(dashboard_metrics()) >= 15
    who = {"namespace": "team-a", "name": "wh"}
    assert value(found, "rtdetr_training_progress_percent", **who) == 10
    assert value(found, "rtdetr_training_epoch", **who) == 3
    assert value(found, "rtdetr_training_eta_seconds", **who) == 5400
    assert value(found, "rtdetr_training_loss", **who) == 17.25
    assert value(found, "rtdetr_training_validation_map50", **who) == 0.72
    assert value(found, "rtdetr_training_restarts", **who) == 1
    assert value(found, "rtdetr_training_map50", namespace="team-a", name="done") == 0.87
    assert value(found, "rtdetr_operator_resources", kind=TRAINING, phase="Training") == 1
    assert value(found, "rtdetr_operator_resources", kind=TRAINING, phase="Succeeded") == 1
    assert value(found, "rtdetr_operator_resources", kind=TRAINING, phase="Failed") == 0
    assert value(found, "rtdetr_operator_resources", kind=DEPLOYMENT, phase="Ready") == 1
    pool = {"namespace": "team-a", "name": "dock", "pool": "H100"}
    assert value(found, "rtdetr_deployment_pool_capacity_streams", **pool) == 96
    assert value(found, "rtdetr_deployment_pool_ready_replicas", **pool) == 2
    assert value(found, "rtdetr_deployment_pool_desired_replicas", **pool) == 3
    # a CPU pool has no capacity figure: no series rather than a made-up 0
    assert [lab["pool"] for _, lab, _ in found["rtdetr_deployment_pool_capacity_streams"]] == [
        "H100"
    ]


def test_a_deleted_object_leaves_no_series(served) -> None:
    metrics, url = served
    metrics.statuses.observe(TRAINING, "team-a", "wh", TRAINING_STATUS)
    metrics.statuses.observe(TRAINING, "team-a", "wh", None)
    found = scrape(url)
    assert found["rtdetr_training_progress_percent"] == []
    assert value(found, "rtdetr_operator_resources", kind=TRAINING, phase="Training") == 0


def test_reconciles_are_counted_and_timed_per_kind_and_result(served) -> None:
    metrics, url = served
    with metrics.reconciling(TRAINING):
        pass
    with pytest.raises(RuntimeError), metrics.reconciling(TRAINING):
        raise RuntimeError("API server said no")
    found = scrape(url)
    total = "rtdetr_operator_reconcile_total"
    assert value(found, "rtdetr_operator_reconcile", total, kind=TRAINING, result="success") == 1
    assert value(found, "rtdetr_operator_reconcile", total, kind=TRAINING, result="error") == 1
    assert value(found, "rtdetr_operator_reconcile", total, kind=DEPLOYMENT, result="success") == 0
    errors = "rtdetr_operator_reconcile_errors_total"
    assert value(found, "rtdetr_operator_reconcile_errors", errors, kind=TRAINING) == 1
    count = "rtdetr_operator_reconcile_duration_seconds_count"
    assert value(found, "rtdetr_operator_reconcile_duration_seconds", count, kind=TRAINING) == 2


class Reconciler:
    """What metrics.watch hooks into: a reconciler's status callback and progress reader."""

    on_status = None
    reader = None


def test_work_queue_depth_and_wait_and_forgotten_keys(served) -> None:
    metrics, url = served
    queue = WorkQueue(resync_period=3600)
    metrics.watch(TRAINING, queue, Reconciler())
    metrics.statuses.observe(TRAINING, "ns", "a", {"phase": "Pending"})

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        for key in [("ns", "a"), ("ns", "b"), ("ns", "a")]:
            queue.add(key)
        before = await asyncio.to_thread(scrape, url)
        done = asyncio.Event()

        async def worker(key: Any) -> None:
            if key == ("ns", "b"):
                done.set()

        queue.start(worker, 1)
        await asyncio.wait_for(done.wait(), 10)
        queue.forget(("ns", "a"))
        after = await asyncio.to_thread(scrape, url)
        await queue.stop()
        return before, after

    before, after = asyncio.run(scenario())
    assert value(before, "rtdetr_operator_workqueue_depth", kind=TRAINING) == 2  # coalesced
    assert value(after, "rtdetr_operator_workqueue_depth", kind=TRAINING) == 0
    count = "rtdetr_operator_workqueue_queue_duration_seconds_count"
    assert (
        value(after, "rtdetr_operator_workqueue_queue_duration_seconds", count, kind=TRAINING) == 2
    )
    assert value(after, "rtdetr_operator_resources", kind=TRAINING, phase="Pending") == 0


def test_metrics_port_zero_means_none_and_a_busy_port_raises() -> None:
    from rtdetr_operator.cli import parse_args

    assert parse_args(["--metrics-port", "0"]).metrics_port == 0
    assert parse_args([]).metrics_port == 8000
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):  # main() turns this into one line and exit code 2
            OperatorMetrics().serve(busy.getsockname()[1], "127.0.0.1")
