"""``RTDETRDeployment.spec``: serve an exported RT-DETR with Triton on GPU and CPU pools.

The model comes from an RTDETRTraining (its exported ONNX on its results volume), from an ONNX
file on a volume, or from a source URI (fetched by the repository Job). For every GPU type in
``pools`` the operator builds a TensorRT FP16 engine on a node of that type, then runs a Triton
Deployment per pool with that GPU's config (``--model-config-name``), a Service, a
HorizontalPodAutoscaler on a Triton queue metric and a PodDisruptionBudget. A pool is sized by
replica limits, or by a camera-stream target that the capacity planner
(:mod:`rtdetr_serving.planner`) turns into replicas.

A pool with ``gpu: CPU`` runs the exported ONNX itself with onnxruntime (Triton's onnxruntime
backend, or its python backend running onnxruntime): no engine, no GPU, and no capacity figure,
so it is sized by replica limits only (``streams``/``fps`` are refused on it).

Everything optional has a default that the operator resolves and reports in status, so the
smallest useful CR names a model source and one pool.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from rtdetr_operator.api.deployment_endpoint import Endpoint
from rtdetr_operator.api.deployment_rules import (
    MODEL_RULES,
    ONNX_SOURCE_RULES,
    PDB_RULES,
    POOL_RULES,
    ROLLOUT_RULES,
    SPEC_RULES,
)
from rtdetr_operator.api.deployment_status import RTDETRDeploymentStatus
from rtdetr_operator.api.meta import (
    API_VERSION,
    ApiModel,
    KindNames,
    LocalObjectReference,
    PassThrough,
    PodMetadata,
    Quantity,
    Toleration,
    defaulted,
)
from rtdetr_operator.api.sources import Sources
from rtdetr_operator.api.training import VolumeSource

INT_OR_PERCENT_PATTERN = r"^[0-9]+%?$"
_INT_OR_PERCENT = re.compile(INT_OR_PERCENT_PATTERN)
VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+(\.[0-9]+)?$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


def _int_or_percent(value: int | str) -> int | str:
    if isinstance(value, str) and not _INT_OR_PERCENT.match(value):
        raise ValueError(f"{value!r} is neither a count nor a percentage such as 25%")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{value} must not be negative")
    return value


#: A count or a percentage (``1``, ``"25%"``), as Deployments and PDBs take them.
IntOrPercent = Annotated[
    int | str,
    AfterValidator(_int_or_percent),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": INT_OR_PERCENT_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def _with_rules(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"json_schema_extra": {"x-kubernetes-validations": rules}}


class TrainingModelSource(ApiModel):
    """Serve what an RTDETRTraining exported."""

    name: str = Field(min_length=1, max_length=253)
    """RTDETRTraining in the same namespace. Its status.artifacts name the ONNX, its results
    volume holds it; a re-run (a new RTDETRTraining of that name) rolls out its new model."""
    artifact: Literal["onnx", "onnxFp16"] = "onnx"
    """Which exported ONNX the engines are built from (a key of the training's
    status.artifacts). onnx: the FP32 graph, TensorRT picks FP16 kernels per layer (the usual
    choice); onnxFp16: the Model Optimizer FP16 graph."""


class OnnxModelSource(ApiModel):
    """Serve an ONNX file from a volume: one of ours (``<stem>.manifest.json`` next to it) or
    any ONNX with TAO's RT-DETR signature (input [batch, 3, H, W], outputs pred_logits and
    pred_boxes), described from its graph plus classNames or a labels.txt next to it."""

    model_config = ApiModel.model_config | _with_rules(ONNX_SOURCE_RULES)

    claim_name: str | None = None
    """PersistentVolumeClaim holding the file."""
    volume: VolumeSource | None = None
    """Any other volume source instead of a claim (nfs, csi...). Node-level sources (hostPath,
    flexVolume...) are refused unless the operator runs with --allow-node-volumes."""
    sub_path: str | None = None
    """Folder of the volume that path is relative to."""
    path: str = Field(min_length=6, max_length=1024)
    """The .onnx file inside the volume (relative, e.g. exports/v7/model.onnx)."""
    class_names: list[str] = Field(default_factory=list, max_length=1000)
    """Class name of each logit column, in order, for an ONNX without a manifest and without
    labels.txt next to it (a column named background is not a class)."""
    revision: str | None = Field(default=None, max_length=63)
    """Free-form label of this file (e.g. v7). Changing it makes the operator read the file
    again although the path is the same; what is served is always identified by the ONNX's
    sha256, whatever this says."""


class UriModelSource(ApiModel):
    """An ONNX file fetched from a source URI (docs/sources.md) by the repository Job's fetch
    step into spec.sources' cache, verified, then prepared like a file on a volume."""

    uri: str = Field(pattern=r"^(s3|https|hf|ngc)://", max_length=2048)
    """s3://bucket/key.onnx, https://... (its sha256 in spec.sources.checksums), hf://, ngc://."""
    class_names: list[str] = Field(default_factory=list, max_length=1000)
    """Class name of each logit column, in order, when the file has no manifest next to it
    (a source URI names one file: labels.txt is not fetched, so name the classes here)."""
    revision: str | None = Field(default=None, max_length=63)
    """Free-form label (e.g. v7). Changing it makes the operator fetch the URI again; what is
    served is always identified by the ONNX's sha256."""


class ModelSource(ApiModel):
    model_config = ApiModel.model_config | _with_rules(MODEL_RULES)

    training: TrainingModelSource | None = None
    """An RTDETRTraining's exported model."""
    onnx: OnnxModelSource | None = None
    """An ONNX file on a volume."""
    uri: UriModelSource | None = None
    """An ONNX file from a source URI (S3, https, Hugging Face, NGC); needs
    spec.repository.claimName."""


class ContainerResources(ApiModel):
    """CPU and memory of a container (requests = limits). GPUs are set by the operator."""

    cpu: Quantity | None = None
    """CPU request and limit."""
    memory: Quantity | None = None
    """Memory request and limit."""


class PoolEngineBuild(ApiModel):
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of this GPU type's engine build pod."""


class Pool(ApiModel):
    """Triton replicas on one GPU type, one GPU each; or on CPU nodes (``gpu: CPU``)."""

    model_config = ApiModel.model_config | _with_rules(POOL_RULES)

    gpu: str = Field(min_length=1, max_length=100)
    """GPU type from the operator's GPU catalog (`rtdetr-serve catalog`, extended by the chart's
    gpuCatalog values), e.g. H100, A100, L40S, L4, T4: pods run only on nodes whose
    nvidia.com/gpu.product is one of that type's products. The API takes any name; the
    operator refuses one its catalog lacks (Stalled, with the closest names). Or CPU: Triton
    runs the ONNX with onnxruntime, no engine, no GPU, no capacity figure."""
    min_replicas: int | None = Field(default=None, ge=1, le=1000)
    """Fewest replicas. Unset: the replicas the stream target needs, else 1."""
    max_replicas: int | None = Field(default=None, ge=1, le=1000)
    """Most replicas the autoscaler may run. Unset: minReplicas (or the stream target's)."""
    streams: int | None = Field(default=None, ge=1, le=1_000_000)
    """Camera streams this pool must serve at fps (with fps): the planner turns them into
    replicas from the GPU's capacity. GPU pools only (a CPU has no capacity figure)."""
    fps: float | None = Field(default=None, gt=0, le=1000)
    """Frames per second of each stream (with streams). GPU pools without one report capacity
    at 30 FPS."""
    cpu_backend: Literal["onnxruntime", "python"] | None = None
    """CPU pools only: how Triton runs the ONNX. onnxruntime (the default): Triton's onnxruntime
    backend, as in NGC's tritonserver images. python: Triton's python backend running
    onnxruntime inside the model, for tritonserver builds without the onnxruntime backend (the
    image's Python needs numpy and onnxruntime)."""
    image: str | None = None
    """This pool's tritonserver image (overrides spec.triton.image), e.g. a CPU-only image for
    a CPU pool. A GPU pool's image needs tensorrtVersion; a CPU pool's does not."""
    tensorrt_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    """TensorRT version inside this GPU pool's image: its engine is built with exactly this
    version. Required with image on a GPU pool; refused on a CPU pool (no engine)."""
    resources: ContainerResources = defaulted(ContainerResources)
    """CPU/memory of this pool's Triton container (overrides spec.triton.resources). CPU pools
    without any get 2 CPUs and 4Gi; their onnxruntime threads follow the CPU limit."""
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of this pool's Triton pods."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Extra node labels this pool's pods require (on GPU pools the GPU product is always
    required too)."""
    engine_build: PoolEngineBuild = defaulted(PoolEngineBuild)
    """This GPU type's engine build Job (GPU pools only)."""


class RepositoryStorage(ApiModel):
    """Where the Triton model repositories live: engine Jobs write, Triton pods read."""

    claim_name: str | None = None
    """PersistentVolumeClaim (ReadWriteMany: build Jobs and Triton pods on several nodes).
    Unset: the model source's volume."""
    sub_path: str | None = None
    """Folder of the volume (mounted at /models). Unset: triton/<name>."""


class TritonOptions(ApiModel):
    image: str | None = None
    """tritonserver image of every pool without its own. Unset: the operator's default (an NGC
    release pinned with its TensorRT version; see status.triton)."""
    tensorrt_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    """TensorRT version inside image (e.g. 10.13.3): engines are built with exactly this
    version. Required with image when a GPU pool uses it."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of the Triton container."""
    args: list[str] = Field(default_factory=list, max_length=64)
    """Extra tritonserver flags (e.g. --log-verbose=1)."""
    resources: ContainerResources = defaulted(ContainerResources)
    """CPU/memory of every Triton container (a pool may override). A GPU pool without any
    requests 1 CPU and 2Gi, limited to 4 CPUs and 16Gi."""


class BuildOptions(ApiModel):
    """The repository Job and the per-GPU engine build Jobs."""

    image: str | None = None
    """Image with `rtdetr-serve` and TensorRT from the same NGC release as the Triton image
    (the trainer image). Unset: the source RTDETRTraining's image, else the operator's
    default."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of the build containers."""
    method: Literal["tensorrt", "trtexec"] = "tensorrt"
    """Build with TensorRT's Python API or with trtexec."""
    resources: ContainerResources = defaulted(ContainerResources)
    """CPU/memory of the build containers (engine builds also get one GPU). Unset: the
    repository Job requests 250m and 512Mi, limited to 2 CPUs and 4Gi; an engine Job 1 CPU and
    2Gi, limited to 4 CPUs and 16Gi."""
    active_deadline_seconds: int = Field(default=3600, ge=60)
    """A build Job running longer than this fails."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels every build pod requires (engine builds also require their GPU type's
    products), e.g. to keep the repository Job on nodes that mount the repository volume."""
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of every build pod."""


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler per pool on a Triton metric served by prometheus-adapter."""

    enabled: bool = True
    """Create the HPAs. Disabled: each pool runs exactly minReplicas."""
    metric: Literal["queueTime", "pendingRequests"] = "queueTime"
    """queueTime: average microseconds a request waits in Triton's queue
    (nv_inference_queue_duration_us / nv_inference_request_success); pendingRequests:
    nv_inference_pending_request_count. See docs/deployment.md for the adapter rules."""
    target: Quantity | None = None
    """Per-pod average to hold. Unset: 10000 (10 ms) for queueTime, 8 for pendingRequests."""
    behavior: PassThrough | None = None
    """An autoscaling/v2 HorizontalPodAutoscalerBehavior (scaleUp/scaleDown policies and
    stabilization windows). Unset: scale up at once, scale down after 5 minutes of calm."""


class DisruptionBudget(ApiModel):
    model_config = ApiModel.model_config | _with_rules(PDB_RULES)

    min_available: IntOrPercent | None = None
    """Pods of a pool that voluntary evictions (drains) must leave running."""
    max_unavailable: IntOrPercent | None = None
    """Pods of a pool that may be evicted at once. Default when neither is set: 1."""


class Rollout(ApiModel):
    model_config = ApiModel.model_config | _with_rules(ROLLOUT_RULES)

    max_surge: IntOrPercent = 1
    """Extra pods (GPUs) a pool may run while replacing old ones."""
    max_unavailable: IntOrPercent = 0
    """Old pods that may stop before their replacement is ready (0: the old model serves
    until the new one is ready)."""
    progress_deadline_seconds: int = Field(default=600, ge=30)
    """A pool whose rollout makes no progress this long makes the deployment Stalled."""
    min_ready_seconds: int = Field(default=0, ge=0)
    """Seconds a new pod must be ready before it counts as available."""
    disruption_budget: DisruptionBudget = defaulted(DisruptionBudget)
    """The PodDisruptionBudget of every pool."""


class RTDETRDeploymentSpec(ApiModel):
    """Serve an exported RT-DETR with Triton on GPU pools, with per-GPU TensorRT engines, and
    on CPU pools with onnxruntime."""

    model_config = ApiModel.model_config | _with_rules(SPEC_RULES)

    model: ModelSource
    """Where the exported ONNX comes from."""
    sources: Sources | None = None
    """Cache, credentials and checksums for a model from a source URI (spec.model.uri)."""
    precision: Literal["fp16"] = "fp16"
    """Engine precision (TensorRT FP16; the model card's capacity figures are FP16)."""
    model_name: str = Field(default="rtdetr", pattern=MODEL_NAME_PATTERN, max_length=63)
    """Model name in Triton (the name clients request)."""
    pools: list[Pool] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["gpu"]},
    )
    """One entry per GPU type, or CPU (each type at most once)."""
    repository: RepositoryStorage = defaulted(RepositoryStorage)
    """Shared storage of the Triton model repositories."""
    triton: TritonOptions = defaulted(TritonOptions)
    """The tritonserver containers."""
    build: BuildOptions = defaulted(BuildOptions)
    """The repository and engine build Jobs."""
    autoscaling: Autoscaling = defaulted(Autoscaling)
    """Horizontal autoscaling of every pool."""
    rollout: Rollout = defaulted(Rollout)
    """Rolling updates and disruption budgets."""
    endpoint: Endpoint = defaulted(Endpoint)
    """One address for all pools: the <name>-endpoint Service always; optionally Gateway API
    routes weighted by pool capacity, or an Ingress."""
    pod_metadata: PodMetadata = defaulted(PodMetadata)
    """Extra labels/annotations of every Triton pod."""
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    """Secrets for pulling the Triton and build images."""
    service_account_name: str | None = None
    """ServiceAccount of the Triton and build pods."""
    priority_class_name: str | None = None
    """PriorityClass of the Triton pods."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of every pod (GPU pods always tolerate nvidia.com/gpu; CPU pods do not)."""


DEPLOYMENT = KindNames(
    kind="RTDETRDeployment",
    plural="rtdetrdeployments",
    singular="rtdetrdeployment",
    short_names=("rtd", "rtdetrdeploy"),
)


class RTDETRDeployment(ApiModel):
    """The whole custom resource as the operator reads it (metadata kept as a plain dict)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = API_VERSION
    kind: str = DEPLOYMENT.kind
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RTDETRDeploymentSpec
    status: RTDETRDeploymentStatus = Field(default_factory=RTDETRDeploymentStatus)
