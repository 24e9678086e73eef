"""CPU pools on a real control plane (kwok plays the kubelets): no engine Job for the CPU type,
Triton pods without a GPU on the CPU node, mixed with a GPU pool; and the API server's CEL
refusing a stream target on a CPU pool."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rtdetr_serving.task_summary import revision_of
from tests.e2e.deployment_support import (
    NAME,
    by_name,
    children,
    example_deployment,
    onnx_sha,
    ready,
    repo_message,
    source_training,
    template_revision,
    wait_for,
)
from tests.e2e.training_support import KWOK, apply_example, events

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]

PRODUCT = "nvidia.com/gpu.product"
CPU_IMAGE = "registry.local/rtdetr-triton:1.0-cpu"
# the local cluster's CPU-only node (hack/cluster/nodes.json)
CPU_NODE = {"node.kubernetes.io/instance-type": "m7i.8xlarge"}


def _with_pools(pools: list[dict[str, Any]]) -> dict[str, Any]:
    """The example deployment serving v1 on ``pools`` (GPU pools keep the example's kwok
    engine messages; the repository Job reports every pool's device type)."""
    cr = example_deployment("v1")
    engines = {p["gpu"]: p for p in cr["spec"]["pools"]}
    cr["spec"]["pools"] = [copy.deepcopy(engines.get(p["gpu"], {})) | p for p in pools]
    gpus = tuple(p["gpu"] for p in pools)
    cr["spec"]["build"]["podMetadata"]["annotations"][f"{KWOK}/termination-message"] = repo_message(
        "v1", gpus
    )
    return cr


def _triton_pods(cluster: Any, ns: str, pool: str) -> list[dict[str, Any]]:
    sel = f"rtdetr.dev/deployment={NAME},rtdetr.dev/component=triton,rtdetr.dev/pool={pool}"
    return list(cluster.get("pods", "-n", ns, "-l", sel)["items"])


def _check_cpu_pool(cluster: Any, ns: str, image: str, replicas: int) -> dict[str, Any]:
    d = by_name(children(cluster, ns, "deployments"))[f"{NAME}-cpu"]
    assert template_revision(d) == revision_of(onnx_sha("v1"))
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == image and c["command"] == ["tritonserver"]
    assert "nvidia.com/gpu" not in c["resources"]["limits"], "a CPU pool asks for no GPU"
    assert "affinity" not in pod and not any(
        t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])
    )
    assert pod["nodeSelector"] == CPU_NODE
    pods = _triton_pods(cluster, ns, "cpu")
    assert len(pods) == replicas
    for p in pods:
        node = cluster.get("node", p["spec"]["nodeName"])
        assert PRODUCT not in node["metadata"]["labels"], "scheduled on a node without GPUs"
    return d


def test_a_cpu_only_deployment_needs_no_engine(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, source_training())
    cr = _with_pools(
        [
            {
                "gpu": "CPU",
                "cpuBackend": "python",
                "image": CPU_IMAGE,
                "minReplicas": 2,
                "nodeSelector": CPU_NODE,
            }
        ]
    )
    cr["spec"]["triton"] = {"image": CPU_IMAGE}  # no tensorrtVersion: no GPU pool uses it
    e2e_cluster.apply(cr, namespace=ns)
    st = wait_for(e2e_cluster, ns, "Ready", ready, operator, timeout=150)

    jobs = children(e2e_cluster, ns, "jobs")
    assert [j["metadata"]["labels"]["rtdetr.dev/component"] for j in jobs] == ["repository"]
    cmd = jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[-2:] == ["--gpu", "CPU"]
    d = _check_cpu_pool(e2e_cluster, ns, CPU_IMAGE, replicas=2)
    assert (
        "--model-config-name=cpu-python" in d["spec"]["template"]["spec"]["containers"][0]["args"]
    )

    (pool,) = st["pools"]
    assert (pool["gpu"], pool["backend"], pool["readyReplicas"]) == ("CPU", "python", 2)
    assert "capacityStreams" not in pool and "streamsPerReplica" not in pool
    assert "capacityStreams" not in st and not st.get("engines")
    assert "tensorrtVersion" not in st["triton"]
    reasons = {e["reason"] for e in events(e2e_cluster, ns, NAME)}
    assert "RolloutComplete" in reasons and "EngineBuilt" not in reasons
    header, line = e2e_cluster.kubectl("get", "rtd", NAME, "-n", ns).stdout.splitlines()[:2]
    at = header.index("STREAMS")
    assert line[at : header.index("MODEL")].strip() == "", "no figure: an empty cell, not 0"
    assert line.split()[:6] == [NAME, "True", "Ready", "1/1", "2/2", revision_of(onnx_sha("v1"))]


def test_mixed_cpu_and_gpu_pools(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, source_training())
    cr = _with_pools(
        [{"gpu": "CPU", "nodeSelector": CPU_NODE}, {"gpu": "L4", "streams": 9, "fps": 30}]
    )
    e2e_cluster.apply(cr, namespace=ns)
    st = wait_for(e2e_cluster, ns, "Ready", ready, operator, timeout=150)

    engines = [
        j["metadata"]["labels"]["rtdetr.dev/pool"]
        for j in children(e2e_cluster, ns, "jobs")
        if j["metadata"]["labels"]["rtdetr.dev/component"] == "engine"
    ]
    assert engines == ["l4"], "no engine Job for the CPU type"
    default_image = st["triton"]["image"]
    d = _check_cpu_pool(e2e_cluster, ns, default_image, replicas=1)
    args = d["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--model-config-name=cpu-onnxruntime" in args
    assert "--backend-config=onnxruntime,intra_op_thread_count=2" in args
    assert d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "2",
        "memory": "4Gi",
    }
    l4 = by_name(children(e2e_cluster, ns, "deployments"))[f"{NAME}-l4"]
    assert (
        l4["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        == "1"
    )
    pools = {p["gpu"]: p for p in st["pools"]}
    assert pools["L4"]["capacityStreams"] == 9 and "capacityStreams" not in pools["CPU"]
    assert st["capacityStreams"] == 9 and st["readyPools"] == "2/2"
    assert st["model"]["gpus"] == ["CPU", "L4"]
    assert [e["gpu"] for e in st["engines"]] == ["L4"]


def test_the_api_server_refuses_streams_on_a_cpu_pool(e2e_cluster, e2e_namespace, rtdetr_crd):
    cr = _with_pools([{"gpu": "CPU", "streams": 10, "fps": 30}])
    out = e2e_cluster.kubectl(
        "apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(cr), check=False
    )
    assert out.returncode != 0
    assert "spec.pools[0].streams" in out.stderr and "CPU pool has no capacity" in out.stderr
