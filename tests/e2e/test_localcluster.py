"""End-to-end checks of the local cluster itself: versions, GPU nodes, kwok pod lifecycles,
storage, and a clean shutdown. Everything runs against real Kubernetes components."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .cluster import E2ECluster, localcluster

pytestmark = pytest.mark.e2e

H100 = "NVIDIA-H100-80GB-HBM3"
GPU_PRODUCTS = {H100: 2, "NVIDIA-A100-SXM4-80GB": 1, "NVIDIA-L4": 1, "NVIDIA-L40S": 1}


def _job(
    name: str,
    *,
    completions: int = 1,
    gpus: int = 0,
    product: str | None = None,
    annotations: dict[str, str] | None = None,
    indexed: bool = False,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "example.invalid/trainer:1"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec: dict[str, Any] = {
        "completions": completions,
        "parallelism": completions,
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {"restartPolicy": "Never", "containers": [container]},
        },
    }
    if indexed:
        spec["completionMode"] = "Indexed"
    if product:
        spec["template"]["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": product}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return None


def _job_pods(c: E2ECluster, ns: str, job: str) -> list[dict[str, Any]]:
    return list(c.get("pods", "-n", ns, "-l", f"job-name={job}")["items"])


def _job_finished(c: E2ECluster, ns: str, job: str, kind: str) -> bool:
    cond = _condition(c.get("job", job, "-n", ns), kind)
    return bool(cond and cond["status"] == "True")


def test_version_is_pinned(e2e_cluster: E2ECluster) -> None:
    version = json.loads(e2e_cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.3"
    assert (version["major"], version["minor"]) == ("1", "36")


def test_gpu_nodes_carry_gfd_labels_and_gpus(e2e_cluster: E2ECluster) -> None:
    nodes = e2e_cluster.get("nodes")["items"]
    by_product: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        product = node["metadata"]["labels"].get("nvidia.com/gpu.product")
        by_product.setdefault(product or "cpu", []).append(node)
    for product, count in GPU_PRODUCTS.items():
        assert len(by_product.get(product, [])) >= count, product
        for node in by_product[product]:
            labels = node["metadata"]["labels"]
            assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
            assert labels["nvidia.com/gpu.count"] == "8"
            assert int(labels["nvidia.com/gpu.memory"]) > 20000
            assert labels["nvidia.com/gpu.compute.major"] in {"8", "9"}
            assert _condition(node, "Ready")["status"] == "True"  # type: ignore[index]
    assert by_product["cpu"], "expected a CPU-only node"
    assert all("nvidia.com/gpu" not in n["status"]["allocatable"] for n in by_product["cpu"])


def test_indexed_h100_job_spans_both_h100_nodes(
    e2e_cluster: E2ECluster, e2e_plain_namespace: str
) -> None:
    c, ns = e2e_cluster, e2e_plain_namespace
    c.apply(_job("train", completions=2, gpus=8, product=H100, indexed=True), namespace=ns)
    c.wait_for("2-pod H100 job to complete", lambda: _job_finished(c, ns, "train", "Complete"))
    pods = _job_pods(c, ns, "train")
    assert {p["status"]["phase"] for p in pods} == {"Succeeded"}
    nodes = {p["spec"]["nodeName"] for p in pods}
    h100 = {
        n["metadata"]["name"]
        for n in c.get("nodes", "-l", f"nvidia.com/gpu.product={H100}")["items"]
    }
    assert len(nodes) == 2 and nodes <= h100
    indexes = {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods
    }
    assert indexes == {"0", "1"}
    # Deleting the Job removes its pods (kwok finishes the pod deletion like a kubelet would).
    c.kubectl("delete", "job", "train", "-n", ns, "--cascade=foreground", "--timeout=60s")
    c.wait_for("job pods to be deleted", lambda: not _job_pods(c, ns, "train"), timeout=30)


def test_absent_gpu_product_stays_pending(
    e2e_cluster: E2ECluster, e2e_plain_namespace: str
) -> None:
    c, ns = e2e_cluster, e2e_plain_namespace
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "needs-b200"},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-B200"},
            "containers": [
                {
                    "name": "main",
                    "image": "example.invalid/x:1",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }
    c.apply(pod, namespace=ns)

    def unschedulable() -> dict[str, Any] | None:
        cond = _condition(c.get("pod", "needs-b200", "-n", ns), "PodScheduled")
        return cond if cond and cond.get("reason") == "Unschedulable" else None

    cond = c.wait_for("Unschedulable condition", unschedulable, timeout=30)
    assert cond["status"] == "False"
    events = c.get("events", "-n", ns, "--field-selector", "involvedObject.name=needs-b200")
    assert any(e["reason"] == "FailedScheduling" for e in events["items"])
    time.sleep(2)
    assert c.get("pod", "needs-b200", "-n", ns)["status"]["phase"] == "Pending"


def test_annotating_a_running_pod_makes_it_fail(
    e2e_cluster: E2ECluster, e2e_plain_namespace: str
) -> None:
    c, ns = e2e_cluster, e2e_plain_namespace
    c.apply(_job("long", annotations={"kwok.rtdetr.dev/complete-after": "10m"}), namespace=ns)

    def running_pod() -> str | None:
        pods = _job_pods(c, ns, "long")
        if pods and pods[0]["status"].get("phase") == "Running":
            return str(pods[0]["metadata"]["name"])
        return None

    pod = c.wait_for("job pod to run", running_pod, timeout=30)
    c.kubectl(
        "annotate",
        "pod",
        pod,
        "-n",
        ns,
        "kwok.rtdetr.dev/fail=true",
        "kwok.rtdetr.dev/exit-code=3",
        "kwok.rtdetr.dev/termination-message=CUDA error: out of memory",
    )
    c.wait_for("job to fail", lambda: _job_finished(c, ns, "long", "Failed"), timeout=30)
    status = c.get("pod", pod, "-n", ns)["status"]
    assert status["phase"] == "Failed"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["message"] == "CUDA error: out of memory"


def test_termination_message_is_propagated(
    e2e_cluster: E2ECluster, e2e_plain_namespace: str
) -> None:
    c, ns = e2e_cluster, e2e_plain_namespace
    summary = json.dumps({"task": "evaluate", "ap50": {"forklift": 0.71, "pallet": 0.64}})
    job = _job(
        "evaluate",
        annotations={
            "kwok.rtdetr.dev/termination-message": summary,
            "kwok.rtdetr.dev/complete-after": "1s",
        },
    )
    c.apply(job, namespace=ns)
    c.wait_for("job to complete", lambda: _job_finished(c, ns, "evaluate", "Complete"))
    (pod,) = _job_pods(c, ns, "evaluate")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert json.loads(terminated["message"]) == json.loads(summary)


def test_simulated_pods_serve_their_log_through_the_api(
    e2e_cluster: E2ECluster, e2e_plain_namespace: str
) -> None:
    c, ns = e2e_cluster, e2e_plain_namespace
    if c.simulated_log is None and not c.owned:  # ours always has one
        pytest.skip("this cluster's simulated containers serve no log file")
    c.apply(_job("talker", annotations={"kwok.rtdetr.dev/complete-after": "2m"}), namespace=ns)
    c.wait_for(
        "pod running",
        lambda: [p for p in _job_pods(c, ns, "talker") if p["status"].get("phase") == "Running"],
    )
    try:
        # an empty file: the API answers, with nothing (not an error)
        assert c.kubectl("logs", "job/talker", "-n", ns).stdout == ""
        c.write_simulated_log(["first line", "second line", "third line"])
        out = c.kubectl("logs", "job/talker", "-n", ns, "--tail=2").stdout
        assert out.splitlines() == ["second line", "third line"]
        stamped = c.kubectl("logs", "job/talker", "-n", ns, "--timestamps").stdout
        assert stamped.splitlines()[0].endswith("Z first line")
    finally:
        c.write_simulated_log([])


def test_rwx_claim_binds_on_default_class(
    e2e_cluster: E2ECluster, e2e_plain_namespace: str
) -> None:
    c, ns = e2e_cluster, e2e_plain_namespace
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "results"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Ti"}}},
    }
    c.apply(claim, namespace=ns)
    c.wait_for(
        "claim to bind",
        lambda: c.get("pvc", "results", "-n", ns).get("status", {}).get("phase") == "Bound",
        timeout=30,
    )
    pvc = c.get("pvc", "results", "-n", ns)
    assert pvc["spec"]["storageClassName"] == "standard"
    assert pvc["status"]["capacity"]["storage"] == "20Ti"
    assert pvc["status"]["accessModes"] == ["ReadWriteMany"]


def test_deployment_pods_become_and_stay_ready(
    e2e_cluster: E2ECluster, e2e_plain_namespace: str
) -> None:
    c, ns = e2e_cluster, e2e_plain_namespace
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "triton"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "triton"}},
            "template": {
                "metadata": {"labels": {"app": "triton"}},
                "spec": {
                    "containers": [
                        {
                            "name": "triton",
                            "image": "example.invalid/tritonserver:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                },
            },
        },
    }
    c.apply(deployment, namespace=ns)

    def available() -> bool:
        return (
            c.get("deployment", "triton", "-n", ns).get("status", {}).get("availableReplicas") == 2
        )

    c.wait_for("deployment to be available", available, timeout=30)
    time.sleep(4)  # longer than a Job pod would live: serving pods must keep running
    assert available()
    pods = c.get("pods", "-n", ns, "-l", "app=triton")["items"]
    assert all(_condition(p, "Ready")["status"] == "True" for p in pods)  # type: ignore[index]
    assert all(p["status"].get("podIP") for p in pods)

    # A crash on a restartPolicy=Always pod is a CrashLoopBackOff, and recovers.
    name = pods[0]["metadata"]["name"]
    c.kubectl("annotate", "pod", name, "-n", ns, "kwok.rtdetr.dev/fail=true")

    def crashed() -> bool:
        status = c.get("pod", name, "-n", ns)["status"]
        waiting = status["containerStatuses"][0]["state"].get("waiting", {})
        return waiting.get("reason") == "CrashLoopBackOff" and status["phase"] == "Running"

    c.wait_for("CrashLoopBackOff", crashed, timeout=30)
    c.kubectl("annotate", "pod", name, "-n", ns, "kwok.rtdetr.dev/fail-")
    c.wait_for("recovery", available, timeout=30)


def test_down_leaves_no_processes(tmp_path: Path) -> None:
    """A second cluster next to the session's one: start, stop twice, nothing survives."""
    # An unrelated process whose pid sits in a stale record must not be touched.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        state = tmp_path / "second"
        cluster = localcluster.start(state)
        assert localcluster.status(state)["up"]
        stale = state / "run" / "bystander.json"
        stale.write_text(
            json.dumps(
                {
                    "name": "bystander",
                    "pid": bystander.pid,
                    "start_ticks": 1,
                    "boot_id": "other-boot",
                    "argv": ["stale"],
                    "log": str(state / "logs" / "x.log"),
                }
            )
        )
        pids = [json.loads(p.read_text())["pid"] for p in (state / "run").glob("*.json")]
        localcluster.stop(state)
        assert localcluster.stop(state) == []  # second call is a no-op
        report = localcluster.status(state)
        assert not report["up"] and report["stray_pids"] == []
        for pid in pids:
            if pid != bystander.pid:
                assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid
        assert bystander.poll() is None, "stop() killed an unrelated process"
        assert not cluster.kubeconfig.exists()
        assert (state / "logs" / "kube-apiserver.log").exists()
    finally:
        os.kill(bystander.pid, signal.SIGKILL)
        bystander.wait()


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
