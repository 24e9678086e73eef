"""``RTDETRTraining.spec``: a TAO experiment plus how to run it on Kubernetes.

``spec.experiment`` is a TAO RT-DETR experiment spec exactly as ``rtdetr train -e`` reads it
(validated by :class:`rtdetr_spec.ExperimentSpec`, the same model the trainer uses). Everything
around it says where the data and results live, what each node gets, where pods may run and what
happens after training (evaluation, export). The number of nodes and GPUs per node come from
``experiment.train.num_nodes`` / ``num_gpus`` and nowhere else, so the pods and TAO's launcher
can never disagree (TAO silently falls back to single-node training when they do).

Cross-field rules are CEL (``x-kubernetes-validations``) so ``kubectl apply`` refuses a CR that
cannot run, naming the field; rules CEL cannot express are checked by the operator
(:mod:`rtdetr_operator.training.resolve`), which then marks the CR Stalled with the same wording.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rtdetr_operator.api.meta import (
    API_VERSION,
    ApiModel,
    EnvVar,
    KindNames,
    LocalObjectReference,
    PassThrough,
    PodMetadata,
    Quantity,
    Toleration,
    defaulted,
)
from rtdetr_operator.api.sources import Sources
from rtdetr_operator.api.training_rules import (
    RESULTS_RULES,
    RUN_REFERENCE_RULES,
    SPEC_RULES,
    STORAGE_RULES,
    forbidden_env_rule,
    immutability_rules,
    reserved_env_rule,
)
from rtdetr_operator.api.training_status import RTDETRTrainingStatus
from rtdetr_spec import ExperimentSpec
from rtdetr_spec.reporting import TERMINATION_LOG_ENV

#: Environment variables the operator sets on training pods (TAO's and torchrun's contract).
RESERVED_ENV: tuple[str, ...] = (
    "WORLD_SIZE",
    "NODE_RANK",
    "RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "NUM_GPU_PER_NODE",
    "PET_NNODES",
    "PET_NPROC_PER_NODE",
    "PET_NODE_RANK",
    "PET_MASTER_ADDR",
    "PET_MASTER_PORT",
    TERMINATION_LOG_ENV,
    "RTDETR_RESUME_FROM",
)
#: Environment variables a CR may never set: the trainer's opt-in to unpickle a checkpoint fully
#: (which can run code from any file on a shared volume) is for people at a shell only.
FORBIDDEN_ENV: tuple[str, ...] = ("RTDETR_TRUST_CHECKPOINTS",)


class VolumeSource(ApiModel):
    """A core/v1 volume source (everything a pod ``volumes[]`` entry takes except ``name``).

    Only ``emptyDir`` is declared so that CEL can refuse it for results; the rest is passed to
    the pod as written and validated by the API server when the pod is created.
    """

    model_config = ApiModel.model_config | {"extra": "allow"}

    empty_dir: PassThrough | None = None
    """Scratch space that dies with the pod: refused for results."""


class DataStorage(ApiModel):
    """The dataset volume, mounted read-only by default on every task pod."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": STORAGE_RULES}
    }

    claim_name: str | None = None
    """A PersistentVolumeClaim (ReadOnlyMany or ReadWriteMany when training uses >1 node)."""
    volume: VolumeSource | None = None
    """Any other volume source instead of a claim (nfs, csi, ephemeral...). Node-level sources
    (hostPath, flexVolume...) are refused unless the operator runs with --allow-node-volumes."""
    mount_path: str = Field(default="/data", pattern=r"^/")
    """Where the experiment's data paths point into."""
    sub_path: str | None = None
    """Mount only this folder of the volume."""
    read_only: bool = True
    """Mount read-only (tasks never write to the dataset)."""


class ResultsStorage(ApiModel):
    """Where checkpoints, metrics and exported models go; must outlive pods.

    A restarted group resumes from ``<results_dir>/train/rtdetr_model_latest.pth`` here.
    """

    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": STORAGE_RULES + RESULTS_RULES}
    }

    claim_name: str | None = None
    """A PersistentVolumeClaim (ReadWriteMany when training uses more than one node)."""
    volume: VolumeSource | None = None
    """Any other persistent volume source instead of a claim (nfs, csi...); not emptyDir.
    Node-level sources (hostPath...) are refused unless the operator runs with
    --allow-node-volumes."""
    mount_path: str = Field(default="/results", pattern=r"^/")
    """Mount path; experiment.results_dir must be this path or below it."""
    sub_path: str | None = None
    """Folder of the volume to mount. Unset: `<name>-<first 8 characters of the uid>`, so runs
    sharing one claim, and a training deleted and created again under the same name, never
    resume from each other's checkpoints (spec.resumeFrom does that on purpose). Empty string:
    the volume's root."""


class Storage(ApiModel):
    data: DataStorage | None = None
    """The dataset (COCO JSON + images or H5 files) the experiment's paths refer to. May be
    left out when every dataset path of the experiment is a source URI (an ``s3://`` folder
    for image_dir, docs/sources.md)."""
    results: ResultsStorage
    """Persistent storage for results_dir (checkpoints survive group restarts)."""


class NodeResources(ApiModel):
    """What each training node (pod) requests. GPUs come from experiment.train.num_gpus."""

    gpus: int | None = Field(default=None, ge=0)
    """GPUs per node; optional, and when set it must equal experiment.train.num_gpus. 0 runs
    every task on CPU: each node starts experiment.train.num_gpus CPU processes (gloo) and no
    pod requests a GPU (development clusters, CPU-only nodes)."""
    gpu_resource: str = "nvidia.com/gpu"
    """Extended resource name of a GPU (e.g. a MIG profile resource)."""
    cpu: Quantity | None = None
    """CPU request and limit per node. Unset: requests 500m, limit 4 CPUs per process."""
    memory: Quantity | None = None
    """Memory request and limit per node. Unset: requests 1Gi, limit 16Gi per process."""
    shm_size: Quantity | None = None
    """Size limit of /dev/shm (a memory emptyDir; NCCL and data loader workers need it).
    Unset: the pod's memory limit."""


class TrainingOptions(ApiModel):
    master_port: int = Field(default=29500, ge=1024, le=65535)
    """Rendezvous port of node 0 (MASTER_PORT)."""
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of training pods only."""


#: The run's checkpoint a later task uses: the final epoch's or model_best.pth.
CheckpointChoice = Literal["last", "best"]


class EvaluationOptions(ApiModel):
    enabled: bool = True
    """Run `rtdetr evaluate` on the trained checkpoint (mAP, mAP50, per-class AP50 in status)."""
    min_map50: float | None = Field(default=None, ge=0.0, le=1.0, alias="minMAP50")
    """Fail the run (and skip export) when the evaluated mAP50 is below this."""
    checkpoint: CheckpointChoice = "last"
    """Which checkpoint of the run is evaluated unless experiment.evaluate.checkpoint names one:
    last (the final epoch's, as TAO does) or best (status.artifacts.bestModel, model_best.pth:
    the highest validation mAP50; the last one when the run wrote no best)."""
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of the evaluation pod only."""


class ExportOptions(ApiModel):
    enabled: bool = True
    """Run `rtdetr export`: ONNX, its manifest and (below) FP16 and DeepStream files."""
    fp16: bool = True
    """Also write an FP16 ONNX (TensorRT FP16 engines build from it)."""
    deepstream: bool = True
    """Also write DeepStream's nvdsinfer_config.yaml and labels.txt."""
    checkpoint: CheckpointChoice = "last"
    """Which checkpoint of the run is exported unless experiment.export.checkpoint names one:
    last or best (as spec.evaluation.checkpoint; set both to best to serve what was scored)."""
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of the export pod only."""


class ExperimentRef(ApiModel):
    """A TAO experiment spec kept in a ConfigMap of this namespace (the file `rtdetr train -e`
    reads), so GitOps keeps the spec file next to the CR."""

    name: str = Field(min_length=1)
    """The ConfigMap's name."""
    key: str = Field(default="experiment.yaml", min_length=1)
    """The key holding the spec YAML."""


class RunReference(ApiModel):
    """Another run's checkpoint to start from: an RTDETRTraining of this namespace, or a file.

    Starting from another run is always written down here; a new RTDETRTraining never finds an
    earlier object's checkpoints on its own (its results folder is keyed by its uid).
    """

    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": RUN_REFERENCE_RULES}
    }

    training: str | None = Field(default=None, min_length=1)
    """An RTDETRTraining in this namespace (it must still exist and have finished or be
    suspended). resumeFrom: its latest checkpoint; initFrom: its trained checkpoint
    (status.artifacts.checkpoint), else its latest. Its results folder is mounted read-only."""
    checkpoint: str | None = Field(default=None, min_length=1)
    """A checkpoint file: a path under spec.storage.data.mountPath or
    spec.storage.results.mountPath, or pvc://<claim>/<path> (a claim of this namespace, mounted
    read-only; e.g. the folder of a deleted run)."""


def _spec_rules(schema: dict[str, Any], cls: type) -> None:
    """Cross-field rules plus one immutability rule per field (see rules.MUTABLE_FIELDS)."""
    wire = [f.alias or name for name, f in cls.model_fields.items()]  # type: ignore[attr-defined]
    schema["x-kubernetes-validations"] = SPEC_RULES + immutability_rules(wire)


class RTDETRTrainingSpec(ApiModel):
    """Fine-tune RT-DETR with a TAO experiment spec, then evaluate and export it."""

    model_config = ApiModel.model_config | {"json_schema_extra": _spec_rules}

    experiment: ExperimentSpec | None = None
    """A TAO RT-DETR experiment spec, verbatim (the YAML `rtdetr train -e` reads). Exactly one
    of experiment and experimentRef."""
    experiment_ref: ExperimentRef | None = None
    """The experiment spec from a ConfigMap key instead of inline. Read when the run starts and
    recorded (status.experimentSource); a later change to the ConfigMap does not alter a
    started run."""
    overrides: list[str] = Field(default_factory=list)
    """TAO's `key=value` overrides, applied in order to the experiment (inline or from the
    ConfigMap) as `rtdetr train -e spec.yaml key=value ...` does, with the same messages."""
    image: str = Field(min_length=1)
    """Trainer image (provides the `rtdetr` command)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Image pull policy of every task container."""
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    """Secrets for pulling the trainer image."""
    storage: Storage
    """Dataset and results volumes."""
    resources: NodeResources = defaulted(NodeResources)
    """Per-node CPU, memory and /dev/shm."""
    gpu_product: str | None = None
    """Only run on nodes with this GPU (node label nvidia.com/gpu.product), e.g.
    NVIDIA-H100-80GB-HBM3."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels every task pod requires."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of every task pod (nvidia.com/gpu is tolerated when GPUs are requested)."""
    affinity: PassThrough | None = None
    """A core/v1 Affinity for every task pod."""
    priority_class_name: str | None = None
    """PriorityClass of every task pod."""
    scheduler_name: str | None = None
    """Scheduler of every task pod (e.g. a gang scheduler)."""
    queue_name: str | None = Field(
        default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )
    """Kueue LocalQueue of the run's Jobs: each Job is created suspended with the label
    kueue.x-k8s.io/queue-name, and Kueue admits it (all its pods: a multi-node group is one
    Job, so one Workload, admitted whole or not at all) when the queue's quota allows."""
    service_account_name: str | None = None
    """ServiceAccount the task pods run as."""
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of every task pod."""
    env: list[EnvVar] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-validations": [
                reserved_env_rule(RESERVED_ENV),
                forbidden_env_rule(FORBIDDEN_ENV),
            ]
        },
    )
    """Extra environment of every task container (launch-contract names are reserved, and
    RTDETR_TRUST_CHECKPOINTS is refused)."""
    training: TrainingOptions = defaulted(TrainingOptions)
    """Training-only settings."""
    evaluation: EvaluationOptions = defaulted(EvaluationOptions)
    """Evaluation after training."""
    export: ExportOptions = defaulted(ExportOptions)
    """Export after evaluation."""
    max_restarts: int = Field(default=3, ge=0, le=1000)
    """How often a failed task (any pod of the group) is recreated before the run fails."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Fail the run when it has been active this long (suspended time excluded)."""
    suspend: bool = False
    """Delete the running pods and wait; clearing it resumes from the latest checkpoint."""
    resume_from: RunReference | None = None
    """Continue another run: optimizer, EMA, epoch and step come from its checkpoint, so
    training goes on to this experiment's train.num_epochs. Used while this run has no
    checkpoint of its own (a restarted group resumes from its own latest)."""
    sources: Sources | None = None
    """Cache, credentials and checksums for source URIs (s3://, https://, hf://, ngc://) in
    experiment.train.pretrained_model_path and experiment.model.pretrained_backbone_path,
    fetched by an init container of the training pods (docs/sources.md)."""
    init_from: RunReference | None = None
    """Start from another run's weights only (train.pretrained_model_path): a new schedule
    from epoch 0, e.g. fine-tuning again with a changed hyperparameter."""


TRAINING = KindNames(
    kind="RTDETRTraining",
    plural="rtdetrtrainings",
    singular="rtdetrtraining",
    short_names=("rtt", "rtdetrtrain"),
)


class RTDETRTraining(ApiModel):
    """The whole custom resource as the operator reads it (metadata kept as a plain dict)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = API_VERSION
    kind: str = TRAINING.kind
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RTDETRTrainingSpec
    status: RTDETRTrainingStatus = Field(default_factory=RTDETRTrainingStatus)
