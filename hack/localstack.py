"""The product on the local cluster: real node, our images, the operator installed with Helm.

``make demo`` and the ``node`` test tier both need the same stack, built the same way a user would
build it on a cluster without a registry:

1. ``localcluster.start(real_node=True)``: the control plane, kwok's simulated GPU nodes and one
   real node (kubelet, containerd) that actually runs pods;
2. ``images.ensure_images`` + ``import_images``: the operator, CPU trainer and CPU Triton images,
   built from the locks without Docker and imported into the node's containerd (a warm run builds
   and imports nothing);
3. the Helm chart from ``charts/rtdetr-operator`` with ``examples/local/operator-values.yaml``: the
   operator runs as a pod with the chart's RBAC and reaches the API through the ``kubernetes``
   Service, like on any cluster.

This module needs the project venv (Helm's Go SDK through ``helm_python``), so it is not part of
the standard-library ``clusterkit``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HACK = Path(__file__).resolve().parent
REPO = HACK.parent
if str(HACK) not in sys.path:
    sys.path.insert(0, str(HACK))

import images  # noqa: E402 - hack/ is not an installed package
import localcluster  # noqa: E402

CHART = REPO / "charts" / "rtdetr-operator"
LOCAL_EXAMPLES = REPO / "examples" / "local"
OPERATOR_VALUES = LOCAL_EXAMPLES / "operator-values.yaml"
OPERATOR_NAMESPACE = "rtdetr-system"
RELEASE = "rtdetr"
OPERATOR_DEPLOYMENT = f"{RELEASE}-rtdetr-operator"
IMAGES = ["operator", "trainer-cpu", "triton-cpu"]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Stack:
    """A running local cluster with a real node, our images and the operator."""

    cluster: localcluster.Cluster
    images: list[Any]

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=120).stdout

    def get(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return out


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def import_images(cluster: localcluster.Cluster, names: list[str] = IMAGES) -> list[Any]:
    """Build (or reuse) our images and import them into the real node's containerd."""
    socket = cluster.containerd_socket
    if socket is None:
        raise RuntimeError("the cluster has no real node to import images into")
    built = images.ensure_images(names)
    for result in images.import_images(built, str(socket), namespace="k8s.io"):
        log(f"image {result.name}: {result.action} ({result.seconds:.1f}s)")
    return built


def ensure_namespace(stack: Stack, name: str, labels: dict[str, str] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        body["metadata"]["labels"] = labels
    stack.kubectl("apply", "-f", "-", input=json.dumps(body))
    wait_for(
        f"the default ServiceAccount of {name}",
        lambda: (
            stack.cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
        ),
        60,
        0.3,
    )


def install_operator(stack: Stack, extra_values: dict[str, Any] | None = None) -> None:
    """Install (or upgrade) the chart with the local values; wait for the operator pod.

    The image is pinned by its content-keyed tag, so a rebuilt operator image rolls out on
    upgrade (the plain tag would name the new image too, but the pod template would not change).
    """
    import helm_python as helm
    import yaml

    values = yaml.safe_load(OPERATOR_VALUES.read_text())
    built = next((i for i in stack.images if i.name == "operator"), None)
    if built is not None:
        repository, tag = built.references[-1].rsplit(":", 1)
        values["image"] = {**values.get("image", {}), "repository": repository, "tag": tag}
    values.update(extra_values or {})
    ensure_namespace(stack, OPERATOR_NAMESPACE, RESTRICTED)
    config = helm.Config(kubeconfig_path=stack.kubeconfig, namespace=OPERATOR_NAMESPACE)
    releases = subprocess.run(
        [
            str(localcluster.find_kubectl()),
            f"--kubeconfig={stack.kubeconfig}",
            "get",
            "secrets",
            "-n",
            OPERATOR_NAMESPACE,
            "-l",
            f"owner=helm,name={RELEASE}",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    if releases:
        config.upgrade(CHART, RELEASE, values)
    else:
        config.install(CHART, RELEASE, values, namespace=OPERATOR_NAMESPACE, timeout=180)
    stack.kubectl(
        "rollout", "status", f"deployment/{OPERATOR_DEPLOYMENT}", "-n", OPERATOR_NAMESPACE,
        "--timeout=180s",
    )  # fmt: skip


def operator_pod(stack: Stack) -> dict[str, Any]:
    pods = stack.get(
        "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=rtdetr-operator"
    )["items"]
    running = [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    if not running:
        raise RuntimeError(f"no operator pod is running in {OPERATOR_NAMESPACE}")
    return running[0]


def up(state_dir: Path, timeout: float = 180) -> Stack:
    """Everything, from whatever is cached: cluster, node, images, operator."""
    log(f"local cluster with a real node in {state_dir}")
    cluster = localcluster.start(state_dir, timeout=timeout, real_node=True)
    log(f"cluster up: {cluster.server}, nodes {', '.join(cluster.node_names)}")
    built = import_images(cluster)
    stack = Stack(cluster=cluster, images=built)
    log("installing the operator with Helm (charts/rtdetr-operator)")
    install_operator(stack)
    log(f"operator running: pod {operator_pod(stack)['metadata']['name']}")
    return stack
