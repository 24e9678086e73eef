"""Pure manifest builders: a resolved RTDETRTraining in, Kubernetes objects (dicts) out.

No I/O and no clock: the same input always gives the same objects, which is what makes the
reconciler idempotent and these functions testable without a cluster.

The training Job is an Indexed Job of ``num_nodes`` pods that all start together
(``parallelism == completions``). Each pod runs ``rtdetr train -e <experiment>`` and spawns its own
torchrun workers, so each needs TAO's launch contract in its environment (anchors B4):
``WORLD_SIZE`` = number of nodes (not processes), ``NODE_RANK`` = the pod's completion index (read
through the downward API, so it is right even for a replacement pod), ``MASTER_ADDR`` = node 0's
stable DNS name under the headless Service, ``MASTER_PORT`` and ``NUM_GPU_PER_NODE``; the PET_*
twins serve tools that call torchrun directly. ``backoffLimit: 0``: the Job never replaces a pod
on its own, because one lost rank leaves its peers hanging in NCCL; the operator recreates the
whole group instead, and TAO resumes from the latest checkpoint on the results volume.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.api.meta import PodMetadata
from rtdetr_operator.api.training import TRAINING
from rtdetr_operator.children import (
    GPU_PRODUCT_LABEL,
    TASK_SCRATCH_SIZE,
    TRAINER_UID,
    bounded_resources,
    owner_reference,
    restricted_pod_security,
    scratch_volume,
    service_account,
    task_default_resources,
    with_gpu_toleration,
)
from rtdetr_operator.fetch_steps import fetch_pod_parts
from rtdetr_operator.jobs import ANNOTATION_COMPLETION_INDEX, task_container
from rtdetr_operator.training.experiment_source import SOURCE_KEY
from rtdetr_operator.training.lineage import pod_volume, resume_env
from rtdetr_operator.training.names import (
    EXPERIMENT_DIR,
    EXPERIMENT_FILE,
    EXPERIMENT_PATH,
    labels,
)
from rtdetr_operator.training.resolve import ResolvedTraining

#: Kueue's label naming the LocalQueue a Job is submitted to.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The trainer's export option that also writes the FP16 ONNX (the one place naming it).
EXPORT_FP16_OVERRIDE = "export.fp16=true"


def _meta(r: ResolvedTraining, name: str, task: str | None = None, attempt: int | None = None):
    return {
        "name": name,
        "namespace": r.namespace,
        "labels": labels(r.name, task, attempt),
        "ownerReferences": [owner_reference(TRAINING.kind, r.name, r.uid)],
    }


def experiment_configmap(r: ResolvedTraining) -> dict[str, Any]:
    """The resolved experiment every task pod reads (``-e /etc/rtdetr/experiment.yaml``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(r, r.names.configmap),
        "data": {EXPERIMENT_FILE: r.experiment_yaml}
        | ({SOURCE_KEY: r.experiment_text} if r.experiment_text is not None else {}),
    }


def headless_service(r: ResolvedTraining) -> dict[str, Any]:
    """Stable per-pod DNS for training pods (``<job>-<index>.<service>``), ready or not."""
    port = r.spec.training.master_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(r, r.names.service, "train"),
        "spec": {
            "clusterIP": "None",
            # Rank 0 must be resolvable before any pod is Ready, or peers fail their DNS check.
            "publishNotReadyAddresses": True,
            "selector": {"rtdetr.dev/training": r.name, "rtdetr.dev/task": "train"},
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port}],
        },
    }


def launch_env(r: ResolvedTraining, job: str) -> list[dict[str, Any]]:
    """TAO's multi-node contract (WORLD_SIZE = nodes) plus torchrun's PET_* equivalents."""

    def rank() -> dict[str, Any]:
        path = f"metadata.annotations['{ANNOTATION_COMPLETION_INDEX}']"
        return {"fieldRef": {"fieldPath": path}}

    master = r.names.master_addr(job)
    port = str(r.spec.training.master_port)
    return [
        {"name": "WORLD_SIZE", "value": str(r.nodes)},
        {"name": "NODE_RANK", "valueFrom": rank()},
        {"name": "MASTER_ADDR", "value": master},
        {"name": "MASTER_PORT", "value": port},
        {"name": "NUM_GPU_PER_NODE", "value": str(r.processes_per_node)},
        {"name": "PET_NNODES", "value": str(r.nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(r.processes_per_node)},
        {"name": "PET_NODE_RANK", "valueFrom": rank()},
        {"name": "PET_MASTER_ADDR", "value": master},
        {"name": "PET_MASTER_PORT", "value": port},
    ]


def train_command() -> list[str]:
    return ["rtdetr", "train", "-e", EXPERIMENT_PATH]


def evaluate_command(checkpoint: str | None) -> list[str]:
    cmd = ["rtdetr", "evaluate", "-e", EXPERIMENT_PATH]
    return cmd + ([f"evaluate.checkpoint={checkpoint}"] if checkpoint else [])


def export_command(r: ResolvedTraining, checkpoint: str | None) -> list[str]:
    """``rtdetr export`` with the CR's export options as TAO-style overrides."""
    cmd = ["rtdetr", "export", "-e", EXPERIMENT_PATH]
    if checkpoint:
        cmd.append(f"export.checkpoint={checkpoint}")
    cmd.append(f"export.serialize_nvdsinfer={'true' if r.spec.export.deepstream else 'false'}")
    if r.on_cpu and not r.experiment.export.on_cpu:
        cmd.append("export.on_cpu=true")  # no GPU is requested, so none will be visible
    if r.spec.export.fp16:
        cmd.append(EXPORT_FP16_OVERRIDE)
    return cmd


def _volumes(r: ResolvedTraining) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spec = r.spec
    data, results = spec.storage.data, spec.storage.results
    volumes: list[dict[str, Any]] = [
        {
            "name": "experiment",
            "configMap": {
                "name": r.names.configmap,
                "items": [{"key": EXPERIMENT_FILE, "path": EXPERIMENT_FILE}],
            },
        },
        _volume("results", results.claim_name, results.volume, read_only=False),
        {"name": "dshm", "emptyDir": _shm(r)},
        scratch_volume(TASK_SCRATCH_SIZE),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "experiment", "mountPath": EXPERIMENT_DIR, "readOnly": True},
        _mount("results", results.mount_path, r.results_sub_path, False),
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    if data is not None:  # absent when every dataset path is a source URI
        volumes.insert(1, _volume("data", data.claim_name, data.volume, read_only=data.read_only))
        mounts.insert(1, _mount("data", data.mount_path, data.sub_path, data.read_only))
    return volumes, mounts


def _volume(name: str, claim: str | None, source: Any, *, read_only: bool) -> dict[str, Any]:
    if claim is not None:
        return {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}
    return {"name": name, **source.model_dump(by_alias=True, exclude_none=True)}


def _mount(name: str, path: str, sub_path: str | None, read_only: bool) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": name, "mountPath": path, "readOnly": read_only}
    if sub_path:
        mount["subPath"] = sub_path
    return mount


def _shm(r: ResolvedTraining) -> dict[str, Any]:
    """/dev/shm in memory, never larger than spec.resources.shmSize, else the memory limit."""
    size = r.spec.resources.shm_size
    if size is None:
        size = _resources(r, 0, r.processes_per_node)["limits"]["memory"]
    return {"medium": "Memory", "sizeLimit": str(size)}


def _resources(r: ResolvedTraining, gpus: int, processes: int) -> dict[str, Any]:
    res = r.spec.resources
    defaults = task_default_resources(processes)
    return bounded_resources(res.cpu, res.memory, defaults, gpus, res.gpu_resource)


def _scheduling(r: ResolvedTraining, gpus: int) -> dict[str, Any]:
    spec = r.spec
    selector = dict(spec.node_selector)
    tolerations = [t.wire() for t in spec.tolerations]
    if gpus:
        if spec.gpu_product:
            selector[GPU_PRODUCT_LABEL] = spec.gpu_product
        tolerations = with_gpu_toleration(tolerations, spec.resources.gpu_resource)
    out: dict[str, Any] = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    if spec.affinity:
        out["affinity"] = spec.affinity
    for key, value in (
        ("priorityClassName", spec.priority_class_name),
        ("schedulerName", spec.scheduler_name),
    ):
        if value:
            out[key] = value
    out.update(service_account(spec.service_account_name))
    if spec.image_pull_secrets:
        out["imagePullSecrets"] = [s.wire() for s in spec.image_pull_secrets]
    return out


def _pod_template(
    r: ResolvedTraining,
    task: str,
    attempt: int,
    *,
    gpus: int,
    command: list[str],
    env: list[dict[str, Any]],
    task_metadata: PodMetadata,
) -> dict[str, Any]:
    spec = r.spec
    volumes, mounts = _volumes(r)
    inits: list[dict[str, Any]] = []
    if task == "train":  # another run's checkpoint (spec.resumeFrom / initFrom), read-only
        extra_volumes, extra_mounts = pod_volume(r.lineage)
        volumes, mounts = volumes + extra_volumes, mounts + extra_mounts
        env = env + resume_env(r.lineage)
    inits, fetch_volumes, fetch_mounts = fetch_pod_parts(
        [f for f in r.fetches if task in f.tasks],
        r.spec.sources,
        r.spec.image,
        r.spec.image_pull_policy,
    )
    volumes, mounts = volumes + fetch_volumes, mounts + fetch_mounts
    ours = labels(r.name, task, attempt)
    pod_labels = {**spec.pod_metadata.labels, **task_metadata.labels, **ours}
    annotations = {
        **spec.pod_metadata.annotations,
        **task_metadata.annotations,
        # A mesh sidecar would keep every finished pod Running forever.
        "sidecar.istio.io/inject": "false",
    }
    container = task_container(
        spec.image,
        spec.image_pull_policy,
        command,
        mounts,
        env=env,
        extra_env=[e.wire() for e in spec.env],
    )
    processes = r.processes_per_node if task == "train" else gpus
    container["resources"] = _resources(r, gpus, processes)
    if task == "train":
        port = spec.training.master_port
        container["ports"] = [{"name": "rendezvous", "containerPort": port}]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
        "securityContext": restricted_pod_security(TRAINER_UID),
        **_scheduling(r, gpus),
    }
    if inits:
        pod_spec["initContainers"] = inits  # source URIs, fetched before the task starts
    if task == "train":
        pod_spec["subdomain"] = r.names.service
    return {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod_spec}


def _job(r: ResolvedTraining, task: str, attempt: int, template: dict[str, Any], n: int):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(r, r.names.job(task, attempt), task, attempt),
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            # The operator restarts whole groups; the Job controller must never retry one pod.
            "backoffLimit": 0,
            "template": template,
        },
    }
    return queued(job, r.spec.queue_name)


def queued(job: dict[str, Any], queue: str | None) -> dict[str, Any]:
    """``job`` handed to Kueue's LocalQueue ``queue``: labelled and created suspended.

    Kueue turns a suspended batch/v1 Job into one Workload whose pod set is the Job's
    ``parallelism`` pods, and unsuspends the Job only once quota for all of them is reserved:
    a multi-node group (one Indexed Job, all ranks) is admitted as a whole or not at all.
    """
    if queue:
        job["metadata"]["labels"][KUEUE_QUEUE_LABEL] = queue
        job["spec"]["suspend"] = True
    return job


def training_job(r: ResolvedTraining, attempt: int) -> dict[str, Any]:
    name = r.names.job("train", attempt)
    template = _pod_template(
        r,
        "train",
        attempt,
        gpus=r.gpus_per_node,
        command=train_command(),
        env=launch_env(r, name),
        task_metadata=r.spec.training.pod_metadata,
    )
    return _job(r, "train", attempt, template, r.nodes)


def evaluation_job(r: ResolvedTraining, attempt: int, checkpoint: str | None) -> dict[str, Any]:
    """One pod evaluating ``checkpoint`` (None: the experiment's own evaluate.checkpoint)."""
    template = _pod_template(
        r,
        "evaluate",
        attempt,
        gpus=r.evaluate_gpus,
        command=evaluate_command(checkpoint),
        env=[],
        task_metadata=r.spec.evaluation.pod_metadata,
    )
    return _job(r, "evaluate", attempt, template, 1)


def export_job(r: ResolvedTraining, attempt: int, checkpoint: str | None) -> dict[str, Any]:
    template = _pod_template(
        r,
        "export",
        attempt,
        gpus=r.export_gpus,
        command=export_command(r, checkpoint),
        env=[],
        task_metadata=r.spec.export.pod_metadata,
    )
    return _job(r, "export", attempt, template, 1)


def task_job(r: ResolvedTraining, task: str, attempt: int, checkpoint: str | None):
    """The Job running ``task`` (train, evaluate or export) at ``attempt``."""
    if task == "train":
        return training_job(r, attempt)
    if task == "evaluate":
        return evaluation_job(r, attempt, checkpoint)
    if task == "export":
        return export_job(r, attempt, checkpoint)
    raise ValueError(f"unknown task {task!r}")
