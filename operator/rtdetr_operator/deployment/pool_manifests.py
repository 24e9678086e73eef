"""Pure builders of a pool's serving objects: Triton Deployment, Service, HPA, PDB.

All four are named ``<deployment>-<gpu>`` and select the pool's pods by the stable labels
``rtdetr.dev/deployment``, ``rtdetr.dev/component=triton`` and ``rtdetr.dev/pool``; the model
revision is a pod label and part of the template, never of the selector, so a new revision is a
rolling update of the same Deployment.

Probes use Triton's own health endpoints: readiness ``/v2/health/ready`` (strict: every model
loaded, warmup included), liveness ``/v2/health/live``, and a startup probe on readiness that
gives a GPU pod up to ten minutes to deserialize its plan and warm up before liveness counts.

A CPU pool's pods load ``configs/cpu-<backend>.pbtxt`` and ask for no GPU: no
``nvidia.com/gpu`` resource, no GPU-product affinity, no GPU toleration; the pool's
``nodeSelector`` becomes the pod's. onnxruntime sizes its thread pool by the *node's* cores unless
told otherwise, so the pod tells it the container's CPU limit: ``--backend-config=onnxruntime,...``
flags for the onnxruntime backend, ``RTDETR_CPU_THREADS`` for the python backend's ``model.py``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from rtdetr_operator.children import (
    SCRATCH,
    SERVING_SCRATCH_SIZE,
    TRITON_GPU,
    TRITON_UID,
    bounded_resources,
    restricted_container_security,
    restricted_pod_security,
    scratch_env,
    scratch_mount,
    scratch_volume,
)
from rtdetr_operator.deployment.autoscaling import behavior, hpa_metric
from rtdetr_operator.deployment.manifests import (
    PORTS,
    gpu_affinity,
    object_meta,
    pod_common,
    repository_mount,
    repository_volume,
    stamp,
    tolerations,
)
from rtdetr_operator.deployment.names import TRITON_CONTAINER, labels, pool_selector
from rtdetr_operator.deployment.resolve import ResolvedDeployment, ResolvedPool
from rtdetr_operator.deployment.source import Source

#: The python backend's model.py reads its onnxruntime thread count from this variable.
CPU_THREADS_ENV = "RTDETR_CPU_THREADS"
_CPU_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")


def cpu_threads(cpu: str | None) -> int | None:
    """Whole cores of a CPU quantity (``"2"`` -> 2, ``"1500m"`` -> 1, at least 1), None when
    unset or in a form threads cannot be read from (then onnxruntime picks)."""
    m = _CPU_QUANTITY.match(cpu or "")
    if m is None:
        return None
    cores = float(m.group(1)) / (1000 if m.group(2) else 1)
    return max(1, math.floor(cores))


#: Size limit of a Triton pod's /dev/shm (memory-backed, so it counts against the pod's memory):
#: Triton's pinned-memory pool (256 MiB by default) and the python backend's IPC regions.
TRITON_SHM_SIZE = "1Gi"
#: How long a stopping Triton pod keeps serving before SIGTERM: longer than kube-proxy and
#: gateways take to drop its endpoint, far shorter than the grace period.
PRE_STOP_SECONDS = 10


def triton_args(r: ResolvedDeployment, pool: ResolvedPool, revision: str) -> list[str]:
    args = [
        f"--model-repository=/models/{revision}",
        f"--model-config-name={pool.config_name}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--http-port={PORTS['http']}",
        f"--grpc-port={PORTS['grpc']}",
        f"--metrics-port={PORTS['metrics']}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={'false' if pool.is_cpu else 'true'}",
    ]
    threads = cpu_threads(pool.cpu)
    if pool.cpu_backend == "onnxruntime" and threads is not None:
        # One process-wide onnxruntime thread pool sized to the container's CPU limit.
        args += [
            "--backend-config=onnxruntime,enable-global-threadpool=1",
            f"--backend-config=onnxruntime,intra_op_thread_count={threads}",
            "--backend-config=onnxruntime,inter_op_thread_count=1",
        ]
    return [*args, *r.spec.triton.args]


def _probe(path: str, *, period: int, failures: int, delay: int = 0) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def triton_deployment(
    r: ResolvedDeployment,
    pool: ResolvedPool,
    source: Source,
    revision: str,
    *,
    replicas: int,
) -> dict[str, Any]:
    """The pool's Deployment serving ``revision`` (``replicas`` is what to create it with)."""
    gpu = pool.name
    pod_labels = {
        **r.spec.pod_metadata.labels,
        **pool.spec.pod_metadata.labels,
        **labels(r.name, "triton", gpu=gpu, revision=revision),
    }
    annotations = {
        **r.spec.pod_metadata.annotations,
        **pool.spec.pod_metadata.annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORTS["metrics"]),
        "prometheus.io/path": "/metrics",
    }
    container: dict[str, Any] = {
        "name": TRITON_CONTAINER,
        "image": pool.image,
        "imagePullPolicy": r.spec.triton.image_pull_policy,
        "command": ["tritonserver"],
        "args": triton_args(r, pool, revision),
        "ports": [
            {"name": name, "containerPort": port, "protocol": "TCP"} for name, port in PORTS.items()
        ],
        "readinessProbe": _probe("/v2/health/ready", period=5, failures=3),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        "startupProbe": _probe("/v2/health/ready", period=10, failures=60),
        # A CPU pool always has both amounts (resolve.py); a GPU pool may leave them unset.
        "resources": bounded_resources(
            pool.cpu, pool.memory, TRITON_GPU, gpus=0 if pool.is_cpu else 1
        ),
        "securityContext": restricted_container_security(),
        # A deleted pod leaves the Service's endpoints a moment after it is told to stop;
        # Triton keeps serving meanwhile, so no request is sent to a closed port mid-rollout.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "workingDir": SCRATCH,
        "env": scratch_env(),
        "volumeMounts": [
            repository_mount(source, read_only=True),
            {"name": "dshm", "mountPath": "/dev/shm"},
            scratch_mount(),
        ],
    }
    threads = cpu_threads(pool.cpu)
    if pool.cpu_backend == "python" and threads is not None:
        container["env"].append({"name": CPU_THREADS_ENV, "value": str(threads)})
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            repository_volume(source, read_only=True),
            # Triton's pinned buffers, and the python backend's stub IPC, live in /dev/shm.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": TRITON_SHM_SIZE}},
            # Home, temporary files and caches: the root filesystem is read-only.
            scratch_volume(SERVING_SCRATCH_SIZE),
        ],
        # Lets in-flight requests finish: Triton drains on SIGTERM.
        "terminationGracePeriodSeconds": 60,
        "securityContext": restricted_pod_security(TRITON_UID),
        **pod_common(r),
    }
    if pool.is_cpu:
        if pool.spec.node_selector:
            pod_spec["nodeSelector"] = dict(sorted(pool.spec.node_selector.items()))
    else:
        pod_spec["affinity"] = gpu_affinity(pool)
    tolerated = tolerations(r, gpu=not pool.is_cpu)
    if tolerated:
        pod_spec["tolerations"] = tolerated
    if r.spec.priority_class_name:
        pod_spec["priorityClassName"] = r.spec.priority_class_name
    ro = r.spec.rollout
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(r, r.names.pool(gpu), labels(r.name, "triton", gpu=gpu)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pool_selector(r.name, gpu)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": ro.max_surge, "maxUnavailable": ro.max_unavailable},
            },
            "minReadySeconds": ro.min_ready_seconds,
            "progressDeadlineSeconds": ro.progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }
    # The replica count is the autoscaler's once the Deployment exists: not part of the hash.
    hashed = {
        **deployment,
        "spec": {k: v for k, v in deployment["spec"].items() if k != "replicas"},
    }
    stamp(hashed)
    deployment["metadata"] = hashed["metadata"]
    return deployment


def triton_service_ports() -> list[dict[str, Any]]:
    """Triton's HTTP, gRPC (h2c) and metrics ports, exposed by pool and endpoint Services."""
    return [
        {"name": "http", "port": PORTS["http"], "targetPort": "http", "protocol": "TCP"},
        {
            "name": "grpc",
            "port": PORTS["grpc"],
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
        {"name": "metrics", "port": PORTS["metrics"], "targetPort": "metrics", "protocol": "TCP"},
    ]


def service(r: ResolvedDeployment, pool: ResolvedPool) -> dict[str, Any]:
    gpu = pool.name
    ports = triton_service_ports()
    return stamp(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": object_meta(r, r.names.pool(gpu), labels(r.name, "triton", gpu=gpu)),
            "spec": {
                "type": "ClusterIP",
                "selector": pool_selector(r.name, gpu),
                "ports": ports,
            },
        }
    )


def autoscaler(r: ResolvedDeployment, pool: ResolvedPool) -> dict[str, Any]:
    gpu = pool.name
    a = r.spec.autoscaling
    return stamp(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": object_meta(r, r.names.pool(gpu), labels(r.name, "triton", gpu=gpu)),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": r.names.pool(gpu),
                },
                "minReplicas": pool.min_replicas,
                "maxReplicas": pool.max_replicas,
                "metrics": [hpa_metric(a.metric, a.target)],
                "behavior": behavior(a.behavior),
            },
        }
    )


def disruption_budget(r: ResolvedDeployment, pool: ResolvedPool) -> dict[str, Any]:
    gpu = pool.name
    pdb = r.spec.rollout.disruption_budget
    spec: dict[str, Any] = {"selector": {"matchLabels": pool_selector(r.name, gpu)}}
    if pdb.min_available is not None:
        spec["minAvailable"] = pdb.min_available
    else:
        spec["maxUnavailable"] = pdb.max_unavailable if pdb.max_unavailable is not None else 1
    return stamp(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": object_meta(r, r.names.pool(gpu), labels(r.name, "triton", gpu=gpu)),
            "spec": spec,
        }
    )


def endpoints(r: ResolvedDeployment, pool: ResolvedPool) -> dict[str, str]:
    host = r.names.service_host(pool.name)
    return {name: f"{host}:{port}" for name, port in PORTS.items()}


__all__ = [
    "autoscaler",
    "cpu_threads",
    "disruption_budget",
    "endpoints",
    "service",
    "triton_args",
    "triton_deployment",
]
