"""What every object the operator creates has in common, whichever kind owns it.

Ownership: each child carries a controller owner reference to its custom resource (the garbage
collector deletes it with the CR; :func:`owned_by` tells a child of *this* CR from one a
same-named predecessor left behind) and the ``app.kubernetes.io`` labels, whose ``managed-by``
value is also the server-side selector of every child watch (handlers.py), so the operator never
streams every pod of the cluster. Each kind adds its own ``rtdetr.dev/*`` labels and names
(``training/names.py``, ``deployment/names.py``).

Pod Security: every pod the operator creates meets the Pod Security Standard "restricted"
(:func:`restricted_pod_security`, :func:`restricted_container_security`), so a namespace labelled
``pod-security.kubernetes.io/enforce=restricted`` admits all of them: non-root with an explicit
uid (an image whose USER is a name, such as NGC's, would otherwise be refused by the kubelet),
the runtime's default seccomp profile, no privilege escalation, every capability dropped. The
root filesystem is read-only too: home, temporary files and caches live in a size-limited
emptyDir at :data:`SCRATCH` (:func:`scratch_volume`, :func:`scratch_env`).

Resources: every container has CPU and memory requests and limits. An amount the CR names is
request and limit both (a GPU cannot be overcommitted, and a pod whose requests equal its limits
is not the first one evicted); an amount it leaves unset gets :class:`DefaultResources` (a small
request, a bounded limit). A pod that asks for GPUs tolerates the GPU resource's taint, as the
ExtendedResourceToleration admission plugin would add were it enabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtdetr_operator.api.meta import API_VERSION

MANAGED_BY = "rtdetr-operator"
#: The extended resource of a whole GPU (the NVIDIA device plugin's).
GPU_RESOURCE = "nvidia.com/gpu"
#: The node label naming the GPU model (set by NVIDIA's GPU feature discovery).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
#: uid/gid of the trainer image's user (Dockerfile.trainer: ``rtdetr``, 10001): task and build
#: pods run as it.
TRAINER_UID = 10001
#: uid/gid of NGC's tritonserver images' ``triton-server`` user: Triton pods run as it.
TRITON_UID = 1000


def app_labels(instance: str, component: str | None = None) -> dict[str, str]:
    """The recommended ``app.kubernetes.io`` labels of a child of the CR ``instance``."""
    out = {"app.kubernetes.io/name": "rtdetr", "app.kubernetes.io/instance": instance}
    if component is not None:
        out["app.kubernetes.io/component"] = component
    out["app.kubernetes.io/managed-by"] = MANAGED_BY
    out["app.kubernetes.io/part-of"] = "rtdetr-operator"
    return out


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """Controller reference to a CR of ``kind``: children are garbage-collected with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """Whether ``obj``'s controller is the CR with ``uid`` (not a same-named predecessor)."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def controller_name(obj: dict[str, Any], kind: str, label: str) -> str | None:
    """Name of the CR of ``kind`` controlling ``obj``: by owner reference, else by ``label``.

    The label is the fallback for a child whose owner reference was stripped (a restore from a
    backup, a hand-made copy): its parent should still look at it.
    """
    meta = obj.get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("apiVersion", "").startswith("rtdetr.dev/"):
            return str(ref["name"])
    return (meta.get("labels") or {}).get(label)


@dataclass(frozen=True)
class DefaultResources:
    """What a container gets for the CPU and memory its CR leaves unset.

    A CR's own amount is request and limit both (Guaranteed QoS, as before). An unset amount
    gets a small request, so the pod schedules on a busy node, and a bounded limit, so one
    runaway task cannot take a node's memory: Burstable QoS.
    """

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


#: The repository Job: hashes an ONNX and writes a few files.
REPOSITORY_BUILD = DefaultResources("250m", "2", "512Mi", "4Gi")
#: An engine Job: TensorRT's builder holds the network and its tactics in host memory.
ENGINE_BUILD = DefaultResources("1", "4", "2Gi", "16Gi")
#: A GPU pool's Triton container (a CPU pool's defaults are deployment/defaults.py's).
TRITON_GPU = DefaultResources("1", "4", "2Gi", "16Gi")


def task_default_resources(processes: int) -> DefaultResources:
    """Defaults of a training, evaluation or export pod running ``processes`` workers: a
    small request, and 4 CPUs and 16Gi per worker as the limit."""
    n = max(1, processes)
    return DefaultResources("500m", str(4 * n), "1Gi", f"{16 * n}Gi")


def bounded_resources(
    cpu: Any,
    memory: Any,
    defaults: DefaultResources,
    gpus: int = 0,
    gpu_resource: str = GPU_RESOURCE,
) -> dict[str, Any]:
    """``resources`` with requests and limits for CPU and memory always set: the CR's amount
    (request = limit) where it names one, ``defaults`` where it does not."""
    requests = {
        "cpu": str(cpu) if cpu is not None else defaults.cpu_request,
        "memory": str(memory) if memory is not None else defaults.memory_request,
    }
    limits = {
        "cpu": str(cpu) if cpu is not None else defaults.cpu_limit,
        "memory": str(memory) if memory is not None else defaults.memory_limit,
    }
    if gpus:
        requests[gpu_resource] = limits[gpu_resource] = str(gpus)
    return {"requests": requests, "limits": limits}


def with_gpu_toleration(
    tolerations: list[dict[str, Any]], gpu_resource: str = GPU_RESOURCE
) -> list[dict[str, Any]]:
    """``tolerations`` plus one for the GPU resource's taint, unless one already covers it."""
    if any(t.get("key") in (gpu_resource, None) for t in tolerations):
        return tolerations
    return [*tolerations, {"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]


def service_account(name: str | None) -> dict[str, Any]:
    """A pod's service account fields: no API token unless the CR names an account.

    No task calls the Kubernetes API, so a pod on the namespace's default account gets no
    token to leak. A CR that names an account (for a cloud identity, a registry) gets that
    account's own ``automountServiceAccountToken`` setting.
    """
    if name:
        return {"serviceAccountName": name}
    return {"automountServiceAccountToken": False}


def restricted_pod_security(uid: int) -> dict[str, Any]:
    """A pod ``securityContext`` that Pod Security "restricted" admits, running as ``uid``.

    ``fsGroup`` makes volumes that support ownership management (most CSI and block volumes)
    writable by the task's user; the uid is explicit because ``runAsNonRoot`` alone refuses an
    image whose USER is a name.
    """
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    """A container ``securityContext`` that Pod Security "restricted" admits, with a read-only
    root filesystem: every container writes only to its volumes and :data:`SCRATCH`."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


#: The one writable place outside a container's volumes: an emptyDir on the node's disk. Home,
#: temporary files and every cache the tools write (matplotlib, torch's compiler, CUDA's JIT,
#: the Triton backends copy) go there, so the image's root filesystem can be read-only.
SCRATCH = "/tmp"
SCRATCH_VOLUME = "tmp"
#: Size limits of the scratch emptyDir: a task pod's compiler caches, a build's or Triton's few
#: files (exceeding it evicts the pod, never fills the node's disk).
TASK_SCRATCH_SIZE = "8Gi"
SERVING_SCRATCH_SIZE = "2Gi"


def scratch_volume(size: str) -> dict[str, Any]:
    return {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": size}}


def scratch_mount() -> dict[str, Any]:
    return {"name": SCRATCH_VOLUME, "mountPath": SCRATCH}


def scratch_env() -> list[dict[str, Any]]:
    """Point home, temporary files and caches at :data:`SCRATCH` (images set HOME to a folder
    of the read-only root filesystem)."""
    return [
        {"name": "HOME", "value": SCRATCH},
        {"name": "TMPDIR", "value": SCRATCH},
        {"name": "XDG_CACHE_HOME", "value": f"{SCRATCH}/.cache"},
        {"name": "MPLCONFIGDIR", "value": f"{SCRATCH}/.config/matplotlib"},
        {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{SCRATCH}/torchinductor"},
    ]
