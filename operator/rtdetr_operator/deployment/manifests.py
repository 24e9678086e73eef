"""Pure manifest builders for an RTDETRDeployment: resolved spec in, Kubernetes objects out.

No I/O and no clock. Each object carries ``rtdetr.dev/spec-hash``, the hash of everything the
builder decided, so the reconciler replaces a child exactly when that changes (comparing with
the live object would always differ: the API server fills defaults in).

* The repository Job (CPU only) runs ``rtdetr-serve repository --by-revision``: it verifies the
  ONNX against its manifest and writes ``/models/<revision>/<model>/`` with a config per GPU
  (and, with a CPU pool, the CPU configs, the ONNX where onnxruntime loads it and ``model.py``).
* An engine Job per GPU type runs ``rtdetr-serve build-engine`` on a node of that type (node
  affinity on every ``nvidia.com/gpu.product`` value of the type, one GPU), refusing any TensorRT
  but the Triton image's (``--tensorrt-version``) and reusing an identical plan (``--reuse``).
* A pool's Deployment runs ``tritonserver --model-repository=/models/<revision>
  --model-config-name=<gpu>`` with the repository mounted read-only; a new revision changes the
  pod template, and the rolling update never touches the old revision's files
  (:mod:`rtdetr_operator.deployment.pool_manifests`; CPU pools get no engine Job and no GPU).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rtdetr_operator.api.deployment import DEPLOYMENT
from rtdetr_operator.children import (
    ENGINE_BUILD,
    GPU_PRODUCT_LABEL,
    REPOSITORY_BUILD,
    SERVING_SCRATCH_SIZE,
    TRAINER_UID,
    bounded_resources,
    owner_reference,
    restricted_pod_security,
    scratch_volume,
    service_account,
    with_gpu_toleration,
)
from rtdetr_operator.deployment.names import ANNOTATION_SPEC_HASH, REPOSITORY_MOUNT, labels
from rtdetr_operator.deployment.resolve import ResolvedDeployment, ResolvedPool
from rtdetr_operator.deployment.source import Source
from rtdetr_operator.fetch_steps import fetch_pod_parts
from rtdetr_operator.jobs import task_container

PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def spec_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Record the object's own hash in its annotations (computed without the annotation)."""
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_SPEC_HASH] = spec_hash(obj)
    return obj


def object_meta(r: ResolvedDeployment, name: str, lab: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": r.namespace,
        "labels": lab,
        "ownerReferences": [owner_reference(DEPLOYMENT.kind, r.name, r.uid)],
    }


def gpu_affinity(pool: ResolvedPool) -> dict[str, Any]:
    """Required node affinity: any node whose GPU product is one of the type's products."""
    assert pool.gpu is not None, "a CPU pool is not pinned to GPU products"
    term = {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": pool.gpu.gpu_product_labels}
    extra = [
        {"key": k, "operator": "In", "values": [v]}
        for k, v in sorted(pool.spec.node_selector.items())
    ]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [term, *extra]}]
            }
        }
    }


def tolerations(r: ResolvedDeployment, gpu: bool) -> list[dict[str, Any]]:
    out = [t.wire() for t in r.spec.tolerations]
    return with_gpu_toleration(out) if gpu else out


def pod_common(r: ResolvedDeployment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "enableServiceLinks": False,
        **service_account(r.spec.service_account_name),
    }
    if r.spec.image_pull_secrets:
        out["imagePullSecrets"] = [s.wire() for s in r.spec.image_pull_secrets]
    return out


def _build_pod(
    r: ResolvedDeployment,
    image: str,
    command: list[str],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    lab: dict[str, str],
    annotations: dict[str, str],
    pool: ResolvedPool | None,
) -> dict[str, Any]:
    build = r.spec.build
    container = task_container(image, build.image_pull_policy, command, mounts)
    defaults = ENGINE_BUILD if pool else REPOSITORY_BUILD
    container["resources"] = bounded_resources(
        build.resources.cpu, build.resources.memory, defaults, 1 if pool else 0
    )
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [*volumes, scratch_volume(SERVING_SCRATCH_SIZE)],
        "securityContext": restricted_pod_security(TRAINER_UID),
        **pod_common(r),
    }
    if build.node_selector:
        spec["nodeSelector"] = dict(sorted(build.node_selector.items()))
    if pool is not None:
        spec["affinity"] = gpu_affinity(pool)
    tolerated = tolerations(r, pool is not None)
    if tolerated:
        spec["tolerations"] = tolerated
    pod_annotations = {
        **build.pod_metadata.annotations,
        **(pool.spec.engine_build.pod_metadata.annotations if pool else {}),
        **annotations,
        "sidecar.istio.io/inject": "false",
    }
    pod_labels = {
        **build.pod_metadata.labels,
        **(pool.spec.engine_build.pod_metadata.labels if pool else {}),
        **lab,
    }
    return {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": spec}


def _job(r: ResolvedDeployment, name: str, lab: dict[str, str], template: dict[str, Any]):
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(r, name, lab),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": r.spec.build.active_deadline_seconds,
            # Evictions and preemptions are not build failures: retry those pods.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    }
                ]
            },
            "template": template,
        },
    }


def repository_volume(source: Source, read_only: bool) -> dict[str, Any]:
    vol = {"name": "repository", **json.loads(json.dumps(source.repository_volume))}
    claim = vol.get("persistentVolumeClaim")
    if claim is not None and read_only:
        claim["readOnly"] = True
    return vol


def repository_mount(source: Source, read_only: bool) -> dict[str, Any]:
    mount: dict[str, Any] = {
        "name": "repository",
        "mountPath": REPOSITORY_MOUNT,
        "readOnly": read_only,
    }
    if source.repository_sub_path:
        mount["subPath"] = source.repository_sub_path
    return mount


def repository_job(r: ResolvedDeployment, source: Source, key: str, image: str) -> dict[str, Any]:
    """The Job that reads the source ONNX and writes ``/models/<revision>/`` for every GPU."""
    volumes = [repository_volume(source, read_only=False)]
    mounts = [repository_mount(source, read_only=False)]
    inits: list[dict[str, Any]] = []
    if source.fetch is not None:  # spec.model.uri: fetched first into the cache, then linked
        inits, fetch_volumes, fetch_mounts = fetch_pod_parts(
            [source.fetch], r.spec.sources, image, r.spec.build.image_pull_policy
        )
        volumes, mounts = volumes + fetch_volumes, mounts + fetch_mounts
    else:
        source_mount: dict[str, Any] = {
            "name": "repository" if source.shared_volume else "source",
            "mountPath": source.mount_path,
            "readOnly": True,
        }
        if source.sub_path:
            source_mount["subPath"] = source.sub_path
        if not source.shared_volume:
            volumes.append({"name": "source", **source.volume})
        mounts.append(source_mount)
    command = ["rtdetr-serve", "repository", "--onnx", source.onnx_path]
    command += ["--output", REPOSITORY_MOUNT, "--by-revision", "--force"]
    command += ["--model-name", r.spec.model_name]
    for gpu in r.gpus:
        command += ["--gpu", gpu]
    given = r.spec.model.onnx or r.spec.model.uri
    for name in given.class_names if given else []:
        command += ["--class-name", name]  # an ONNX without manifest or labels.txt
    lab = labels(r.name, "repository")
    template = _build_pod(r, image, command, volumes, mounts, lab, {}, None)
    if inits:
        template["spec"]["initContainers"] = inits
    return stamp(_job(r, r.names.repository_job(key), lab, template))


def engine_job(
    r: ResolvedDeployment,
    pool: ResolvedPool,
    source: Source,
    *,
    revision: str,
    onnx: str,
    model_dir: str,
    image: str,
) -> dict[str, Any]:
    """The Job building ``pool``'s GPU type's plan for ``revision`` on a node of that type,
    with the TensorRT of the pool's Triton image."""
    assert pool.gpu is not None and pool.tensorrt_version is not None, "GPU pools only"
    command = ["rtdetr-serve", "build-engine", "--onnx", onnx, "--gpu", pool.name]
    command += ["--output", f"{model_dir}/1", "--tensorrt-version", pool.tensorrt_version]
    command += ["--reuse"]
    if r.spec.build.method == "trtexec":
        command.append("--trtexec")
    lab = labels(r.name, "engine", gpu=pool.name, revision=revision)
    template = _build_pod(
        r,
        image,
        command,
        [repository_volume(source, read_only=False)],
        [repository_mount(source, read_only=False)],
        lab,
        {},
        pool,
    )
    name = r.names.engine_job(pool.name, revision)
    return stamp(_job(r, name, lab, template))
