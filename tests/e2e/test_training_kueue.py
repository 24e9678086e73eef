"""spec.queueName with a real Kueue controller (built from its Go module by hack/kueue.py).

A two-node training asks for 2 x 8 GPUs. While its ClusterQueue has quota for one node only,
Kueue keeps the whole group out: the training Job stays suspended and no pod exists, not even
rank 0 alone. Once the quota covers both nodes, Kueue admits the group as a whole, unsuspends
the Job, both pods run (kwok plays the kubelet) and the run goes on to Succeeded, its
evaluation and export Jobs admitted through the same queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.training_support import (
    apply_example,
    example_training,
    jobs,
    training_status,
    wait_phase,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]

GPUS_PER_NODE = 8  # examples/training.yaml: train.num_gpus


@pytest.fixture(scope="module")
def kueue(e2e_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import kueue as kueuekit  # hack/, on the tests' path

    kubectl = _kubectl_argv(e2e_cluster)
    kueuekit.install(kubectl)
    proc = kueuekit.start(kubectl, e2e_cluster.kubeconfig, tmp_path_factory.mktemp("kueue"))
    yield proc
    proc.stop()


def _kubectl_argv(cluster: Any) -> list[str]:
    from localcluster import find_kubectl

    return [str(find_kubectl()), f"--kubeconfig={cluster.kubeconfig}"]


def _queues(namespace: str, gpus: int) -> list[dict[str, Any]]:
    flavor = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ResourceFlavor",
        "metadata": {"name": f"gpu-{namespace}"},
    }
    quota = [
        {"name": "cpu", "nominalQuota": "1000"},
        {"name": "memory", "nominalQuota": "10Ti"},
        {"name": "nvidia.com/gpu", "nominalQuota": str(gpus)},
    ]
    cluster_queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": f"gpus-{namespace}"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                    "flavors": [{"name": f"gpu-{namespace}", "resources": quota}],
                }
            ],
        },
    }
    local_queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": "team", "namespace": namespace},
        "spec": {"clusterQueue": f"gpus-{namespace}"},
    }
    return [flavor, cluster_queue, local_queue]


def _workloads(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    return list(cluster.get("workloads.kueue.x-k8s.io", "-n", namespace)["items"])


def _pods(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(cluster.get("pods", "-n", namespace, "-l", f"rtdetr.dev/training={name}")["items"])


def test_a_two_node_group_is_admitted_as_a_whole_or_not_at_all(
    e2e_cluster: Any, e2e_namespace: str, operator: Any, kueue: Any, tmp_path: Path
) -> None:
    ns, name = e2e_namespace, "queued"
    e2e_cluster.apply(_queues(ns, gpus=GPUS_PER_NODE))  # one node's worth
    apply_example(e2e_cluster, ns, example_training(name, queueName="team"))

    def pending_workload() -> dict[str, Any] | None:
        items = [w for w in _workloads(e2e_cluster, ns) if "train" in w["metadata"]["name"]]
        return items[0] if items and items[0].get("status", {}).get("conditions") else None

    workload = e2e_cluster.wait_for("Kueue's Workload of the training Job", pending_workload, 90)
    (pod_set,) = workload["spec"]["podSets"]
    assert pod_set["count"] == 2, pod_set  # one Workload for both ranks: a gang
    reasons = {c["type"]: c for c in workload["status"]["conditions"]}
    assert reasons["QuotaReserved"]["status"] == "False", reasons
    assert "nvidia.com/gpu" in reasons["QuotaReserved"]["message"], reasons
    time.sleep(5)  # long enough for a controller that admitted part of the group to show it
    (job,) = [j for j in jobs(e2e_cluster, ns, name) if "train" in j["metadata"]["name"]]
    assert (
        job["spec"]["suspend"] is True
        and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team"
    )
    assert _pods(e2e_cluster, ns, name) == []  # not even rank 0 alone
    assert training_status(e2e_cluster, ns, name)["phase"] in ("Pending", "Training")

    e2e_cluster.apply(_queues(ns, gpus=2 * GPUS_PER_NODE)[1])  # quota for the whole group
    e2e_cluster.wait_for(
        "both training pods",
        lambda: (
            len([p for p in _pods(e2e_cluster, ns, name) if "train" in p["metadata"]["name"]]) == 2
        ),
        90,
    )
    st = wait_phase(e2e_cluster, ns, name, "Succeeded", operator, timeout=180)
    assert st["metrics"]["mAP50"] > 0
    admitted = {w["metadata"]["name"]: w for w in _workloads(e2e_cluster, ns)}
    assert len(admitted) == 3, sorted(admitted)  # train, evaluate and export went through Kueue
    for w in admitted.values():
        conditions = {c["type"]: c["status"] for c in w["status"]["conditions"]}
        assert conditions.get("Admitted") == "True" or conditions.get("Finished") == "True", w
    e2e_cluster.kubectl("delete", "clusterqueue", f"gpus-{ns}", "--wait=false", check=False)
    e2e_cluster.kubectl("delete", "resourceflavor", f"gpu-{ns}", "--wait=false", check=False)
