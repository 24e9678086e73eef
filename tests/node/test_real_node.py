"""The local cluster's real node: Ready beside kwok's nodes, running our imported images.

A pod here is a runc container on the CNI bridge: cluster DNS resolves Services, the API server
is reached through the ``kubernetes`` Service, and the kubelet finds images that were imported
with ``ctr`` (nothing is ever pulled).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.deploy.test_images import lock_names
from tests.node import support
from tests.node.support import localstack

pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]

REAL = "rtdetr.dev/real-node"


def test_the_real_node_is_ready_beside_the_simulated_ones(stack: localstack.Stack) -> None:
    nodes = stack.get("nodes")["items"]
    real = [n for n in nodes if n["metadata"]["labels"].get(REAL) == "true"]
    simulated = [n for n in nodes if "kwok.x-k8s.io/node" in n["metadata"].get("annotations", {})]
    assert len(real) == 1 and len(simulated) >= 5
    node = real[0]
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    server = json.loads(stack.kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert info["kubeletVersion"] == server  # built from the control plane's own module
    assert {"key": REAL, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert any(n["metadata"]["labels"].get("nvidia.com/gpu.product") for n in simulated), (
        "the simulated GPU nodes stay for GPU-shaped tests"
    )


def test_the_node_namespace_mounts_the_kubelet_root_before_the_kubelet_starts(
    tmp_path: Path,
) -> None:
    """The namespace holder alone (no kubelet yet) makes the kubelet's root an rshared mount.

    A kubelet that bind-mounts its root itself at startup races its own pod-resources socket
    rename there and can exit with "invalid cross-device link".
    """
    paths = support.nodeconfig.NodePaths(root=tmp_path / "node", image_store=tmp_path / "images")
    for d in (paths.var_log, paths.kubelet_root):
        d.mkdir(parents=True)
    holder = subprocess.Popen(support.realnode.holder_argv(paths))
    try:
        localstack.wait_for(
            "the namespace holder", lambda: support.realnode.namespace_ready(holder.pid), 30, 0.1
        )
        mounts = [
            line.split() for line in Path(f"/proc/{holder.pid}/mountinfo").read_text().splitlines()
        ]
        own = [m for m in mounts if m[4] == str(paths.kubelet_root)]
        assert own, f"{paths.kubelet_root} is not a mount point in the node's namespace"
        assert any(f.startswith("shared:") for f in own[-1][6 : own[-1].index("-")]), own[-1]
    finally:
        holder.kill()
        holder.wait()
    host = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path) not in host, "the node's mounts must stay inside its namespace"


def test_the_operator_runs_as_a_pod_on_the_real_node(stack: localstack.Stack) -> None:
    pod = localstack.operator_pod(stack)
    real = stack.get("nodes", "-l", f"{REAL}=true")["items"][0]["metadata"]["name"]
    assert pod["spec"]["nodeName"] == real
    assert pod["spec"]["containers"][0]["image"].startswith("localhost/rtdetr-operator:0.1.0")
    ns = stack.get("namespace", localstack.OPERATOR_NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # It works: through the kubernetes Service (in-cluster configuration, the chart's RBAC) it
    # reads a training the API server accepts but the trainer's schema refuses, and says so.
    test_ns = support.new_namespace(stack)
    try:
        cr = support.training("invalid", epochs=1, size=64)
        cr["spec"]["experiment"]["model"]["nheads"] = 7  # 128 is not divisible by 7
        support.apply(stack, test_ns, cr)
        st = support.wait_phase(stack, test_ns, "invalid", {"Failed"}, timeout=120)
        stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
        assert stalled["reason"] == "InvalidSpec" and "nheads" in stalled["message"], stalled
    finally:
        stack.kubectl("delete", "namespace", test_ns, "--wait=false", check=False)
    pod = localstack.operator_pod(stack)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0


def _run_pod(stack: localstack.Stack, ns: str, name: str, image: str, script: str) -> str:
    """A restricted pod on the real node running ``script``; returns its log."""
    uid = 10001 if "trainer" in image else 1000
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {REAL: "true"},
            "tolerations": [{"key": REAL, "operator": "Exists", "effect": "NoSchedule"}],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    stack.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def finished() -> str | None:
        phase = stack.get("pod", name, "-n", ns)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = support.wait_for(f"pod {name}", finished, timeout=300, interval=1)
    out = support.logs(stack, ns, f"pod/{name}")
    assert phase == "Succeeded", out
    return out


def test_pods_resolve_services_and_reach_the_api(stack: localstack.Stack) -> None:
    ns = support.new_namespace(stack)
    try:
        script = (
            "python - <<'EOF'\n"
            "import socket, ssl, urllib.request\n"
            "print(socket.gethostbyname('kubernetes.default.svc.cluster.local'))\n"
            "ctx = ssl.create_default_context(cafile="
            "'/var/run/secrets/kubernetes.io/serviceaccount/ca.crt')\n"
            "token = open('/var/run/secrets/kubernetes.io/serviceaccount/token').read()\n"
            "req = urllib.request.Request('https://kubernetes.default.svc/version',"
            " headers={'Authorization': 'Bearer ' + token})\n"
            "print(urllib.request.urlopen(req, context=ctx, timeout=10).status)\n"
            "EOF"
        )
        out = _run_pod(stack, ns, "dns-api", localstack_image("triton"), script)
        assert out.split() == ["10.96.0.1", "200"], out
    finally:
        stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def localstack_image(kind: str) -> str:
    return {
        "trainer": "localhost/rtdetr-trainer:0.1.0-cpu",
        "triton": "localhost/rtdetr-triton:0.1.0-cpu",
    }[kind]


def test_the_cpu_trainer_image_runs_rtdetr_on_pypi_torch(stack: localstack.Stack) -> None:
    ns = support.new_namespace(stack)
    try:
        script = (
            "id -un; id -u; pwd; rtdetr --help | head -1; rtdetr-serve --help > /dev/null; "
            "python -c 'import torch; print(torch.__version__)'"
        )
        out = _run_pod(stack, ns, "trainer", localstack_image("trainer"), script)
        user, uid, cwd, usage, torch = out.split("\n")[:5]
        assert (user, uid, cwd) == ("rtdetr", "10001", "/home/rtdetr")
        assert usage.startswith("usage: rtdetr")
        lock = localstack.REPO / "requirements" / "trainer-cpu.lock"
        assert torch.split("+")[0] == lock_names(lock)["torch"]
    finally:
        stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_a_warm_import_sends_nothing(stack: localstack.Stack) -> None:
    socket = stack.cluster.containerd_socket
    assert socket is not None
    results = localstack.images.import_images(stack.images, str(socket), namespace="k8s.io")
    assert {r.action for r in results} == {"skipped"}
    assert sum(r.bytes_sent for r in results) == 0
