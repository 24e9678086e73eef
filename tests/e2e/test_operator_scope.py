"""A cluster-wide operator never acts in the control plane's namespaces (--deny-namespaces)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest

from tests.e2e.training_support import (
    OperatorProcess,
    apply_example,
    example_training,
    training_status,
    wait_phase,
)

pytestmark = pytest.mark.e2e
# Fixtures: rtdetr_crd (plus e2e_cluster/e2e_namespace from conftest).
pytest_plugins = ["tests.e2e.training_fixtures"]


def test_a_cr_in_kube_system_is_ignored_while_others_are_served(
    e2e_cluster, e2e_namespace, rtdetr_crd, tmp_path: Path
) -> None:
    name = f"denied-{e2e_namespace[-8:]}"
    denied = example_training(name)
    # Only the CR: kube-system gets no claims from a test.
    e2e_cluster.apply([copy.deepcopy(denied)], namespace="kube-system")
    op = OperatorProcess(e2e_cluster.env, [], tmp_path / "operator.log")
    op.start()
    try:
        apply_example(e2e_cluster, e2e_namespace, example_training("served"))
        wait_phase(e2e_cluster, e2e_namespace, "served", "Training", op, timeout=60)
        time.sleep(2)  # the denied CR was queued at start, long before "served" trained
        assert training_status(e2e_cluster, "kube-system", name) == {}
        sel = f"rtdetr.dev/training={name}"
        assert not e2e_cluster.get("jobs,configmaps,services", "-n", "kube-system", "-l", sel)[
            "items"
        ]
        assert f"ignoring RTDETRTraining kube-system/{name}" in op.log(400)
        assert "--deny-namespaces" in op.log(400)
    finally:
        op.stop()
        e2e_cluster.kubectl("delete", "rtdetrtraining", name, "-n", "kube-system", check=False)
