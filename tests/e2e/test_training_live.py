"""Live progress on simulated nodes: rank 0's log, served by kwok, read through the pod log API.

The simulated nodes name kwok's server as their kubelet, and kwok serves every simulated
container's log from one file (hack/cluster/kwok-stages.yaml, ClusterLogs). The test writes
there what rank 0 of ``rtdetr train`` prints (rtdetr_spec.progress, the trainer's own writer)
and watches it travel the same path as on a real node: API server, "kubelet", the operator's
rate-limited reader, ``status.trainingProgress``, ``kubectl get rtt`` and Validated events.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import demo  # hack/demo.py: make demo prints the same status
import pytest

from rtdetr_spec.progress import ProgressReport, Validation, format_line
from tests.e2e.training_support import (
    OperatorProcess,
    apply_example,
    events,
    example_training,
    training_status,
    wait_phase,
)
from tests.support import table_rows

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]

NAME = "warehouse-r50"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def line(epoch: int, percent: float, eta_s: float, map50: float) -> str:
    """The line rank 0 prints after validating epoch ``epoch`` of 30."""
    report = ProgressReport(
        epoch=epoch,
        num_epochs=30,
        step=400,
        steps_per_epoch=400,
        global_step=400 * epoch,
        percent=percent,
        eta_seconds=eta_s,
        loss=20.0 - epoch / 2,
        learning_rate=1e-4,
        validation=Validation(
            epoch=epoch, m_ap=map50 * 0.6, m_ap50=map50, per_class_ap50={"forklift": map50}
        ),
        time=START + timedelta(minutes=epoch),
    )
    return format_line(report)


@pytest.fixture
def simulated_log(e2e_cluster: Any) -> Iterator[None]:
    """Simulated containers print nothing again after the test, whatever it wrote."""
    if e2e_cluster.simulated_log is None and not e2e_cluster.owned:  # ours always has one
        pytest.skip("this cluster's simulated containers serve no log file")
    yield
    e2e_cluster.write_simulated_log([])


@pytest.fixture
def fast_operator(
    e2e_cluster: Any, e2e_namespace: str, rtdetr_crd: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator that reads progress every second (30 s by default)."""
    proc = OperatorProcess(
        e2e_cluster.env, [e2e_namespace], tmp_path / "operator.log", **{"progress-interval": 1}
    )
    proc.start()
    yield proc
    proc.stop()


def _row(cluster: Any, namespace: str) -> dict[str, str]:
    """``kubectl get rtt`` as {column: cell} (blank cells stay blank)."""
    return table_rows(cluster.kubectl("get", "rtt", NAME, "-n", namespace).stdout)[0]


def _live(cluster: Any, namespace: str, epochs: str) -> dict[str, str] | None:
    """The table row once it shows ``epochs`` while the training still runs."""
    phase = training_status(cluster, namespace, NAME).get("phase")
    if phase in ("Evaluating", "Exporting", "Succeeded", "Failed"):
        raise AssertionError(f"{NAME} left Training ({phase}) before showing epoch {epochs}")
    row = _row(cluster, namespace)
    return row if row["PHASE"] == "Training" and row["EPOCH"] == epochs else None


def test_a_simulated_training_shows_live_progress(
    e2e_cluster: Any, e2e_namespace: str, simulated_log: None, fast_operator: OperatorProcess
) -> None:
    ns = e2e_namespace
    e2e_cluster.write_simulated_log(["rank 0: loading COCO annotations", line(3, 10.0, 5400, 0.55)])
    apply_example(e2e_cluster, ns, example_training(train_after="40s"))

    row = e2e_cluster.wait_for(
        "epoch 3/30 in kubectl get rtt", lambda: _live(e2e_cluster, ns, "3/30"), timeout=30
    )
    assert (row["PROGRESS"], row["ETA"]) == ("10", "1h30m")
    progress = training_status(e2e_cluster, ns, NAME)["trainingProgress"]
    assert progress["loss"] == pytest.approx(18.5)
    assert progress["learningRate"] == pytest.approx(1e-4)
    assert progress["validation"]["mAP50"] == pytest.approx(0.55)
    assert progress["validation"]["perClassAP50"] == {"forklift": pytest.approx(0.55)}
    assert progress["reportTime"].startswith("2026-01-05T09:03:00")

    # rank 0 goes on: the next read shows the newer line, and each validation is one event
    e2e_cluster.write_simulated_log(
        [line(3, 10.0, 5400, 0.55), "epoch 4 ...", line(12, 40.0, 3600, 0.81)]
    )
    row = e2e_cluster.wait_for(
        "epoch 12/30 in kubectl get rtt", lambda: _live(e2e_cluster, ns, "12/30"), timeout=30
    )
    assert (row["PROGRESS"], row["ETA"]) == ("40", "1h00m")
    live = demo.live_progress(training_status(e2e_cluster, ns, NAME))  # make demo's line
    assert live == "  epoch 12/30, 40 %, ETA 1h00m, val mAP50 0.810"
    validated = sorted(
        e["message"] for e in events(e2e_cluster, ns, NAME) if e["reason"] == "Validated"
    )
    assert validated == [
        "epoch 12/30: mAP50 0.8100, mAP 0.4860",
        "epoch 3/30: mAP50 0.5500, mAP 0.3300",
    ]

    # the task ends: its last lines are read once more and the run is shown complete
    status = wait_phase(e2e_cluster, ns, NAME, "Succeeded", fast_operator, timeout=120)
    progress = status["trainingProgress"]
    assert (progress["epochs"], progress["percent"], progress["eta"]) == ("30/30", 100, "0s")
    assert progress["validation"]["epoch"] == 12
