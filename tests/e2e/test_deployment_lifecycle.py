"""examples/deployment.yaml on a real control plane: engines per GPU type, then Triton pools."""

from __future__ import annotations

import pytest

from rtdetr_serving.task_summary import revision_of
from tests.e2e.deployment_support import (
    CATALOG,
    NAME,
    by_name,
    children,
    condition,
    example_deployment,
    onnx_sha,
    ready,
    source_training,
    template_revision,
    wait_for,
)
from tests.e2e.training_support import apply_example, events

pytestmark = pytest.mark.e2e
# Fixtures: rtdetr_crd, operator (plus e2e_cluster/e2e_namespace from conftest).
pytest_plugins = ["tests.e2e.training_fixtures"]

PRODUCT = "nvidia.com/gpu.product"


def _affinity_values(pod_spec: dict) -> list[str]:
    terms = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (term,) = terms["nodeSelectorTerms"]
    (expr,) = [e for e in term["matchExpressions"] if e["key"] == PRODUCT]
    assert expr["operator"] == "In"
    return list(expr["values"])


def test_example_serves_the_trained_model(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, source_training())
    e2e_cluster.apply(example_deployment("v1"), namespace=ns)
    st = wait_for(e2e_cluster, ns, "Ready", ready, operator, timeout=150)
    rev = revision_of(onnx_sha("v1"))

    # one repository Job, then one engine Job per GPU type, pinned to every product of it
    jobs = by_name(children(e2e_cluster, ns, "jobs"))
    repo = [
        j for j in jobs.values() if j["metadata"]["labels"]["rtdetr.dev/component"] == "repository"
    ]
    engines = {
        j["metadata"]["labels"]["rtdetr.dev/pool"]: j
        for j in jobs.values()
        if j["metadata"]["labels"]["rtdetr.dev/component"] == "engine"
    }
    assert len(repo) == 1 and sorted(engines) == ["h100", "l4"]
    repo_done = repo[0]["status"]["completionTime"]
    for pool, job in engines.items():
        gpu = CATALOG.get(pool)
        pod = job["spec"]["template"]["spec"]
        assert _affinity_values(pod) == gpu.gpu_product_labels
        c = pod["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert c["command"][:2] == ["rtdetr-serve", "build-engine"]
        assert c["command"][c["command"].index("--tensorrt-version") + 1] == "10.13.3"
        assert job["metadata"]["creationTimestamp"] >= repo_done, "engines after the repository"
        # the scheduler put the build on a node of that GPU type
        (build_pod,) = e2e_cluster.get(
            "pods", "-n", ns, "-l", f"job-name={job['metadata']['name']}"
        )["items"]
        node = e2e_cluster.get("node", build_pod["spec"]["nodeName"])
        assert node["metadata"]["labels"][PRODUCT] in gpu.gpu_product_labels

    # per pool: Deployment, Service, HPA, PDB with the pool's selector
    deployments = by_name(children(e2e_cluster, ns, "deployments"))
    services = by_name(children(e2e_cluster, ns, "services"))
    hpas = by_name(children(e2e_cluster, ns, "hpa"))
    pdbs = by_name(children(e2e_cluster, ns, "pdb"))
    for pool, replicas in (("h100", 1), ("l4", 4)):
        name = f"{NAME}-{pool}"
        selector = {
            "rtdetr.dev/deployment": NAME,
            "rtdetr.dev/component": "triton",
            "rtdetr.dev/pool": pool,
        }
        d = deployments[name]
        assert d["spec"]["selector"]["matchLabels"] == selector
        assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        assert template_revision(d) == rev and d["status"]["readyReplicas"] == replicas
        pod = d["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert f"--model-repository=/models/{rev}" in args
        assert f"--model-config-name={pool}" in args
        assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert _affinity_values(pod) == CATALOG.get(pool).gpu_product_labels
        assert services[name]["spec"]["selector"] == selector
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [8000, 8001, 8002]
        assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name
        assert hpas[name]["spec"]["metrics"][0]["pods"]["metric"]["name"] == (
            "rtdetr_triton_queue_time_us"
        )
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == selector
        for triton_pod in e2e_cluster.get(
            "pods", "-n", ns, "-l", ",".join(f"{k}={v}" for k, v in selector.items())
        )["items"]:
            node = e2e_cluster.get("node", triton_pod["spec"]["nodeName"])
            assert node["metadata"]["labels"][PRODUCT] in CATALOG.get(pool).gpu_product_labels

    # status: what serves, its engines, capacity at 30 FPS (H100 76 + 4 x L4 9)
    assert st["model"]["revision"] == rev and st["phase"] == "Ready"
    assert condition(st, "Stalled")["status"] == "False"
    cr = e2e_cluster.get("rtdetrdeployment", NAME, "-n", ns)
    assert st["observedGeneration"] == cr["metadata"]["generation"]
    assert st["capacityStreams"] == 76 + 4 * 9 and st["readyPools"] == "2/2"
    assert {e["gpu"]: e["computeCapability"] for e in st["engines"]} == {"H100": "9.0", "L4": "8.9"}
    assert all(
        e["tensorrtVersion"] == "10.13.3" and len(e["planSha256"]) == 64 for e in st["engines"]
    )
    pools = {p["gpu"]: p for p in st["pools"]}
    assert pools["L4"]["targetStreams"] == 36 and pools["L4"]["streamsPerReplica"] == 9
    assert pools["H100"]["endpoints"]["grpc"] == f"{NAME}-h100.{ns}.svc:8001"
    reasons = [
        e["reason"]
        for e in events(e2e_cluster, ns, NAME)
        if e["involvedObject"]["kind"] == "RTDETRDeployment"
    ]
    assert "EngineBuilt" in reasons and "RolloutComplete" in reasons
    table = e2e_cluster.kubectl("get", "rtd", NAME, "-n", ns).stdout.split("\n")[1].split()
    assert table[:6] == [NAME, "True", "Ready", "2/2", "5/5", "112"]
