"""One endpoint over every pool, and a GPU type that exists only in the operator's catalog.

kwok plays the kubelet (its pods are Ready with their own IPs, and the real
kube-controller-manager writes the EndpointSlices), so "answers on one Service" is checked at
the level Kubernetes decides it: the endpoint Service's EndpointSlices hold exactly the ready
Triton pods of both pools. Requests through status.url to real Triton pods are the node tier's
(tests/node/test_serving_real.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.deployment_support import (
    KWOK,
    NAME,
    by_name,
    children,
    engine_message,
    example_deployment,
    ready,
    repo_message,
    source_training,
    wait_for,
)
from tests.e2e.training_support import OperatorProcess, apply_example

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]


def _ready_triton_ips(cluster: Any, ns: str) -> set[str]:
    out = set()
    for pod in children(cluster, ns, "pods"):
        if pod["metadata"]["labels"].get("rtdetr.dev/component") != "triton":
            continue
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            out.add(pod["status"]["podIP"])
    return out


def _slice_ips(cluster: Any, ns: str, service: str) -> set[str]:
    slices = cluster.get("endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}")[
        "items"
    ]
    return {
        addr
        for s in slices
        for ep in s.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready")
        for addr in ep["addresses"]
    }


def test_two_pools_answer_on_one_service_through_status_url(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, source_training())
    e2e_cluster.apply(example_deployment("v1", l4_streams=18), namespace=ns)
    st = wait_for(e2e_cluster, ns, "Ready", ready, operator, timeout=150)
    service = f"{NAME}-endpoint"
    assert st["url"] == f"http://{service}.{ns}.svc:8000"
    assert st["endpoints"] == {
        "http": f"{service}.{ns}.svc:8000",
        "grpc": f"{service}.{ns}.svc:8001",
        "metrics": f"{service}.{ns}.svc:8002",
    }
    services = by_name(children(e2e_cluster, ns, "services"))
    assert {f"{NAME}-h100", f"{NAME}-l4", service} <= set(services), "pool Services stay"
    pods = {
        p["status"]["podIP"]: p["metadata"]["labels"]["rtdetr.dev/pool"]
        for p in children(e2e_cluster, ns, "pods")
        if p["metadata"]["labels"].get("rtdetr.dev/component") == "triton"
    }
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        want, got = _ready_triton_ips(e2e_cluster, ns), _slice_ips(e2e_cluster, ns, service)
        if want and got == want:
            break
        time.sleep(0.5)
    assert got == want, (got, want)
    assert {pods[ip] for ip in got} == {"h100", "l4"}, "the one Service spans both pools"
    assert len(got) == 1 + 2  # H100 minReplicas 1, L4 18 streams at 9 per GPU
    printed = e2e_cluster.kubectl("get", "rtd", NAME, "-n", ns).stdout
    assert f"http://{service}.{ns}.svc:8000" in printed


LAB_GPU = {
    "name": "LAB-L40S",
    "display_name": "L40S (lab-measured)",
    "gpu_product_labels": ["NVIDIA-L40S"],
    "compute_capability": "8.9",
    "memory_gib": 48,
    "streams": {"fps30": 20, "fps15": 40},
    "engine": {"opt_batch": 8, "max_batch": 16},
}


def test_a_gpu_type_from_the_catalog_values_is_planned_and_served(
    e2e_cluster, e2e_namespace, rtdetr_crd, tmp_path: Path
) -> None:
    ns = e2e_namespace
    catalog = tmp_path / "gpu-catalog.yaml"
    catalog.write_text(yaml.safe_dump({"gpus": [LAB_GPU]}))
    env = {**e2e_cluster.env, "RTDETR_GPU_CATALOG": str(catalog)}
    op = OperatorProcess(env, [ns], tmp_path / "operator.log")
    op.start()
    try:
        apply_example(e2e_cluster, ns, source_training())
        cr = example_deployment("v1")
        cr["spec"]["pools"] = [{"gpu": "LAB-L40S", "streams": 30, "fps": 30, "maxReplicas": 4}]
        cr["spec"]["build"]["podMetadata"]["annotations"][f"{KWOK}/termination-message"] = (
            repo_message("v1", ("LAB-L40S",))
        )
        cr["spec"]["pools"][0]["engineBuild"] = {
            "podMetadata": {
                "annotations": {
                    f"{KWOK}/termination-message": engine_message(
                        "v1", "LAB-L40S", compute_capability="8.9"
                    )
                }
            }
        }
        e2e_cluster.apply(cr, namespace=ns)
        st = wait_for(e2e_cluster, ns, "Ready", ready, op, timeout=150)
        (pool,) = st["pools"]
        # 30 streams at 20 per GPU (the catalog values, not the built-in L40S's 29): 2 replicas.
        assert (pool["gpu"], pool["streamsPerReplica"], pool["minReplicas"]) == ("LAB-L40S", 20, 2)
        dep = by_name(children(e2e_cluster, ns, "deployments"))[f"{NAME}-lab-l40s"]
        terms = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == ["NVIDIA-L40S"]
    finally:
        op.stop()
