"""The operator's /metrics on the local cluster: every metric the Grafana dashboard queries is
served, and the counts follow a real training's lifecycle."""

from __future__ import annotations

import pytest

from rtdetr_operator.api.training import TRAINING as TRAINING_NAMES
from tests.e2e.training_support import apply_example, example_training, training_status, wait_phase
from tests.operator.metrics_support import dashboard_metrics, scrape

TRAINING = TRAINING_NAMES.kind

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]


def _value(found: dict, fam: str, sample: str, **labels: str) -> float:
    return sum(
        v
        for name, lab, v in found[fam]
        if name == sample and all(lab.get(k) == x for k, x in labels.items())
    )


def test_metrics_endpoint_serves_the_dashboard_and_counts_a_training(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns, url = e2e_namespace, f"http://127.0.0.1:{operator.metrics_port}/metrics"
    apply_example(e2e_cluster, ns, example_training())
    wait_phase(e2e_cluster, ns, "warehouse-r50", "Succeeded", operator)
    found = scrape(url)
    missing = dashboard_metrics() - set(found)
    assert not missing, f"the dashboard queries metrics the operator does not serve: {missing}"

    total = "rtdetr_operator_reconcile_total"
    assert _value(found, "rtdetr_operator_reconcile", total, kind=TRAINING, result="success") > 0
    res = "rtdetr_operator_resources"
    assert _value(found, res, res, kind=TRAINING, phase="Succeeded") == 1
    assert _value(found, res, res, kind=TRAINING, phase="Training") == 0
    m50 = "rtdetr_training_map50"
    assert _value(found, m50, m50, namespace=ns, name="warehouse-r50") == pytest.approx(0.871)
    wait = "rtdetr_operator_workqueue_queue_duration_seconds_count"
    assert (
        _value(found, "rtdetr_operator_workqueue_queue_duration_seconds", wait, kind=TRAINING) > 0
    )
    # The rank-0 pod was read while it ran; its simulated log is empty here, which is counted
    # and otherwise harmless: the run succeeded, with no live progress in its status.
    reads = "rtdetr_operator_progress_log_reads_total"
    assert _value(found, "rtdetr_operator_progress_log_reads", reads) >= 1
    assert "trainingProgress" not in training_status(e2e_cluster, ns, "warehouse-r50")
