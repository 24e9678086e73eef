"""Fifty RTDETRTrainings applied at once all converge (timing lives in bench/operator_scale.py)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.training_support import apply_example, example_training

pytestmark = pytest.mark.e2e
# Fixtures: rtdetr_crd, operator (plus e2e_cluster/e2e_namespace from conftest).
pytest_plugins = ["tests.e2e.training_fixtures"]

COUNT = 50


def small_training(i: int) -> dict:
    """One node, one GPU of any kind: 50 of them fit the local cluster's 40 GPUs in waves."""
    cr = example_training(f"scale-{i:03d}", train_after="2s")
    cr["spec"].pop("gpuProduct")
    cr["spec"]["resources"] = {"cpu": "1", "memory": "2Gi"}
    cr["spec"]["experiment"]["train"].update(num_nodes=1, num_gpus=1)
    return cr


def test_fifty_trainings_converge(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    crs = [small_training(i) for i in range(COUNT)]
    apply_example(e2e_cluster, ns, crs[0])
    e2e_cluster.apply(crs[1:], namespace=ns)
    deadline = time.monotonic() + 600
    phases: dict[str, int] = {}
    while time.monotonic() < deadline:
        items = e2e_cluster.get("rtdetrtrainings", "-n", ns)["items"]
        phases = {}
        for item in items:
            phase = (item.get("status") or {}).get("phase", "<none>")
            phases[phase] = phases.get(phase, 0) + 1
        if phases.get("Succeeded") == COUNT:
            break
        assert not phases.get("Failed"), (phases, operator.log())
        time.sleep(2)
    assert phases.get("Succeeded") == COUNT, (phases, operator.log())
    for item in e2e_cluster.get("rtdetrtrainings", "-n", ns)["items"]:
        st = item["status"]
        assert st["observedGeneration"] == item["metadata"]["generation"]
        assert st["restarts"] == 0 and st["metrics"]["mAP50"] > 0
    jobs = e2e_cluster.get("jobs", "-n", ns)["items"]
    assert len(jobs) == 3 * COUNT  # exactly one Job per task, no duplicates
