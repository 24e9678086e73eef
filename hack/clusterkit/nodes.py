"""Simulated GPU and CPU nodes, rendered from hack/cluster/nodes.json.

The node list lives in a data file so it can be extended without code changes. Labels follow
what NVIDIA GPU Feature Discovery and the standard kubelet/cloud labels would put on a real
node, because the operator selects nodes and engine profiles by exactly these labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import K8S_VERSION
from .kube import ApiError, KubeClient

NODES_FILE = Path(__file__).resolve().parent.parent / "cluster" / "nodes.json"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
PODS_PER_NODE = "110"


def load_spec(path: Path = NODES_FILE) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def _gpu_labels(spec: dict[str, Any], model: dict[str, Any], count: int) -> dict[str, str]:
    driver = str(spec["driver"]["version"])
    d_major, d_minor, *rest = driver.split(".")
    d_rev = rest[0] if rest else ""
    c_major, c_minor = str(spec["driver"]["cudaRuntime"]).split(".")
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": model["product"],
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/gpu.memory": str(model["memoryMiB"]),
        "nvidia.com/gpu.family": model["family"],
        "nvidia.com/gpu.compute.major": str(model["computeMajor"]),
        "nvidia.com/gpu.compute.minor": str(model["computeMinor"]),
        "nvidia.com/gpu.mode": "compute",
        "nvidia.com/mig.capable": "true" if model["migCapable"] else "false",
        "nvidia.com/mps.capable": "false",
        "nvidia.com/cuda.driver-version.major": d_major,
        "nvidia.com/cuda.driver-version.minor": d_minor,
        "nvidia.com/cuda.driver-version.revision": d_rev,
        "nvidia.com/cuda.driver-version.full": driver,
        "nvidia.com/cuda.runtime-version.major": c_major,
        "nvidia.com/cuda.runtime-version.minor": c_minor,
        "nvidia.com/cuda.runtime-version.full": f"{c_major}.{c_minor}",
        "nvidia.com/cuda.driver.major": d_major,
        "nvidia.com/cuda.driver.minor": d_minor,
        "nvidia.com/cuda.driver.rev": d_rev,
        "nvidia.com/cuda.runtime.major": c_major,
        "nvidia.com/cuda.runtime.minor": c_minor,
    }


def render_node(spec: dict[str, Any], entry: dict[str, Any], index: int) -> dict[str, Any]:
    """Build the Node object (with status) for one entry of the node list.

    Each node gets its own InternalIP and pod CIDR, as node IPAM would assign, so pod IPs
    and host IPs differ between nodes the way controllers and tests expect.
    """
    name = entry["name"]
    shape_name = entry["shape"]
    shape = spec["shapes"][shape_name]
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": shape_name,
        "topology.kubernetes.io/region": spec.get("region", "local"),
        "topology.kubernetes.io/zone": entry.get("zone", "local-a"),
    }
    capacity = {
        "cpu": shape["cpu"],
        "memory": shape["memory"],
        "ephemeral-storage": shape["ephemeralStorage"],
        "pods": PODS_PER_NODE,
    }
    taints: list[dict[str, str]] = []
    model_key = entry.get("gpuModel", shape.get("gpuModel"))
    if model_key:
        count = int(entry.get("gpus", shape.get("gpus", 8)))
        labels.update(_gpu_labels(spec, spec["gpuModels"][model_key], count))
        labels["nvidia.com/gpu.machine"] = shape_name
        capacity["nvidia.com/gpu"] = str(count)
        if spec.get("gpuTaint"):
            taints.append(dict(spec["gpuTaint"]))
    labels.update(entry.get("labels", {}))
    taints += entry.get("taints", [])
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: "fake"},
        },
        "spec": {
            "podCIDR": f"10.244.{index}.0/24",
            "podCIDRs": [f"10.244.{index}.0/24"],
            **({"taints": taints} if taints else {}),
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": f"10.0.0.{10 + index}"},
                # Where the API server dials this node's "kubelet" for logs: kwok's server.
                {"type": "InternalDNS", "address": "localhost"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": capacity,
            "allocatable": dict(capacity),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": K8S_VERSION,
                "osImage": "kwok simulated node",
            },
        },
    }


def create_nodes(client: KubeClient, spec: dict[str, Any] | None = None) -> list[str]:
    """Create every node of the list (existing ones are left alone); return the names."""
    spec = spec or load_spec()
    names = []
    for index, entry in enumerate(spec["nodes"]):
        node = render_node(spec, entry, index)
        client.create("/api/v1/nodes", node)
        names.append(node["metadata"]["name"])
    return names


def nodes_ready(client: KubeClient, names: list[str]) -> bool:
    """True when every named node reports Ready=True and carries no not-ready taint."""
    try:
        items = client.get("/api/v1/nodes")["items"]
    except ApiError:
        return False
    ready = set()
    for node in items:
        conditions = node.get("status", {}).get("conditions", [])
        is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        tainted = any(
            t["key"].startswith("node.kubernetes.io/") for t in node["spec"].get("taints", [])
        )
        if is_ready and not tainted:
            ready.add(node["metadata"]["name"])
    return set(names) <= ready
