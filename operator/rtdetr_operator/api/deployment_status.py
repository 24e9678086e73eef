"""``RTDETRDeployment.status``: what is served, what is being built, and kstatus conditions.

For GitOps tools: ``observedGeneration`` and the metav1 conditions ``Ready`` / ``Reconciling`` /
``Stalled`` (set from the first reconcile on). For people: the model revision being served
(``model``) and the one being rolled out (``target``), each identified by its ONNX's sha256; one
record per engine (TensorRT version, compute capability and plan sha256, as the build Job
reported them); and per pool its Deployment's replicas, its capacity in camera streams at the
pool's FPS (from the planner) and its endpoints. A CPU pool has no engine and no capacity figure:
its capacity fields are absent (unknown, not zero) and ``capacityStreams`` sums GPU pools only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from rtdetr_operator.api.meta import ApiModel, Conditions

DeploymentPhase = Literal[
    "Pending", "Preparing", "BuildingEngines", "RollingOut", "Ready", "Stalled"
]
JobState = Literal["Pending", "Running", "Succeeded", "Failed"]


class ModelRevision(ApiModel):
    """One model version: a Triton repository prepared from one ONNX."""

    revision: str
    """First 12 hex digits of the ONNX's sha256 (the repository folder's name)."""
    onnx_sha256: str
    """sha256 of the ONNX the engines are built from."""
    source: str
    """Where it came from (the RTDETRTraining or the file)."""
    repository: str
    """Repository folder inside the repository volume (mounted at /models)."""
    onnx: str
    """The ONNX copy inside the repository the engines are built from."""
    gpus: list[str] = Field(default_factory=list)
    """Device types the repository has configs for (GPU types, and CPU)."""
    prepared_time: datetime | None = None
    """When the repository Job finished."""


class SourceStatus(ApiModel):
    """The latest read of the model source (by the repository Job)."""

    fingerprint: str
    """Identity of the source as last seen (changes when a new model may exist)."""
    description: str
    """The source in words."""
    job: str | None = None
    """Repository Job reading it."""
    state: JobState = "Pending"
    """Pending, Running, Succeeded or Failed."""
    revision: str | None = None
    """Revision the Job found (when Succeeded)."""
    message: str | None = None
    """Why it failed."""
    fetching: bool | None = None
    """The Job's fetch step is downloading the model (a model named by URI)."""
    transferred: int | None = None
    """Bytes of the model downloaded so far, while fetching."""
    size: int | None = None
    """Bytes of the model, while fetching (when the server said)."""
    percent: int | None = Field(default=None, ge=0, le=100)
    """Share of the model downloaded, while fetching."""


class EngineStatus(ApiModel):
    """One TensorRT plan: a revision built for a GPU type."""

    revision: str
    """Model revision."""
    gpu: str
    """GPU type (catalog name)."""
    state: JobState = "Pending"
    """Pending, Running, Succeeded or Failed."""
    job: str | None = None
    """The build Job."""
    tensorrt_version: str | None = None
    """TensorRT version that built the plan (equals the Triton image's)."""
    compute_capability: str | None = None
    """Compute capability of the GPU that built it."""
    gpu_device_name: str | None = None
    """The GPU's device name."""
    plan: str | None = None
    """Plan file inside the repository."""
    plan_sha256: str | None = None
    """sha256 of the plan."""
    build_seconds: float | None = None
    """How long TensorRT took."""
    measured_batch: int | None = None
    """Batch size of the plan's best measured throughput (TensorRT runtime, on the GPU that
    built it)."""
    measured_mean_ms: float | None = None
    """Mean latency of one execution at measuredBatch, milliseconds."""
    measured_p99_ms: float | None = None
    """99th percentile latency at measuredBatch, milliseconds."""
    measured_throughput_ips: float | None = None
    """Images/s at measuredBatch (batch * 1000 / mean latency): the pool's capacity figure."""
    completion_time: datetime | None = None
    """When the build finished."""
    message: str | None = None
    """Why the build failed, or the build's own message."""
    reason: str | None = None
    """CamelCase reason of a failure (EngineBuildFailed, TensorRTVersionMismatch...)."""


class Endpoints(ApiModel):
    http: str
    """host:port of Triton's HTTP/REST endpoint (KServe v2)."""
    grpc: str
    """host:port of the gRPC endpoint."""
    metrics: str
    """host:port of the Prometheus metrics."""


class PoolStatus(ApiModel):
    gpu: str
    """GPU type, or CPU."""
    deployment: str
    """The pool's Deployment (also its Service, HPA and PDB name)."""
    revision: str | None = None
    """Model revision the pool's pods are on (the new one once its rollout finished)."""
    replicas: int = 0
    """Pods of the Deployment."""
    ready_replicas: int = 0
    """Pods ready to serve."""
    updated_replicas: int = 0
    """Pods on the Deployment's current template."""
    desired_replicas: int = 0
    """Replicas the Deployment (or its autoscaler) asks for."""
    min_replicas: int
    """Resolved minReplicas."""
    max_replicas: int
    """Resolved maxReplicas."""
    backend: str | None = None
    """How its Triton runs the model: tensorrt (a GPU pool), onnxruntime or python (CPU)."""
    image: str | None = None
    """The pool's tritonserver image."""
    fps: float | None = None
    """FPS the capacity is given at (absent for CPU pools)."""
    streams_per_replica: int | None = None
    """Camera streams one replica (one GPU) sustains at fps (planner); absent for CPU pools,
    which have no capacity figure."""
    capacity_streams: int | None = None
    """Streams the ready replicas sustain at fps (absent for CPU pools)."""
    target_streams: int | None = None
    """The pool's stream target, if it has one."""
    capacity_source: str | None = None
    """Where streamsPerReplica comes from: measured (the engine Job's timing), table, derived
    or estimate (the catalog); absent for CPU."""
    catalog_streams30: int | None = None
    """Streams per replica at 30 FPS by the GPU catalog."""
    catalog_streams15: int | None = None
    """Streams per replica at 15 FPS by the GPU catalog."""
    measured_streams30: int | None = None
    """Streams per replica at 30 FPS by the engine's measured throughput (absent until timed)."""
    measured_streams15: int | None = None
    """Streams per replica at 15 FPS by the engine's measured throughput."""
    endpoints: Endpoints | None = None
    """In-cluster addresses of the pool's Service."""


class TritonStatus(ApiModel):
    image: str
    """The tritonserver image of pools without their own (status.pools[].image)."""
    tensorrt_version: str | None = None
    """Its TensorRT version (every engine of those pools is built with it); absent when no
    GPU pool serves with it."""
    build_image: str | None = None
    """Image of the build Jobs."""


class RTDETRDeploymentStatus(ApiModel):
    """Observed state of an RTDETRDeployment."""

    phase: DeploymentPhase = "Pending"
    """Pending, Preparing (reading the model), BuildingEngines, RollingOut, Ready or Stalled."""
    observed_generation: int | None = None
    """metadata.generation the status reflects."""
    conditions: Conditions
    """kstatus conditions: Ready, Reconciling, Stalled."""
    model: ModelRevision | None = None
    """The revision being served."""
    target: ModelRevision | None = None
    """A revision being built and rolled out (absent when none)."""
    source: SourceStatus | None = None
    """The latest read of the model source."""
    engines: list[EngineStatus] = Field(default_factory=list)
    """Engines of the served and target revisions."""
    pools: list[PoolStatus] = Field(default_factory=list)
    """One entry per pool."""
    triton: TritonStatus | None = None
    """Resolved images and TensorRT version."""
    ready_pools: str | None = None
    """Pools whose pods all serve the current model, e.g. 2/2."""
    replicas: str | None = None
    """Ready/desired Triton pods over all pools, e.g. 5/5."""
    capacity_streams: int | None = None
    """Camera streams the ready pods sustain (sum over the pools with a capacity figure, at each
    pool's FPS; absent when no pool has one, e.g. only CPU pools)."""
    url: str | None = None
    """HTTP URL of the deployment's Service, which spans the ready Triton pods of every pool,
    e.g. http://warehouse-endpoint.ml.svc:8000."""
    endpoints: Endpoints | None = None
    """host:port of the deployment's Service (HTTP, gRPC, metrics)."""
