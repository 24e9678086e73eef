"""Validate an RTDETRDeployment and decide everything its spec leaves open.

The API server already refused what the CRD's schema and CEL can express; this re-checks those
rules (a cluster may run an older CRD) and adds what needs the operator's own knowledge: the GPU
catalog (is the GPU type known here, can its pods be pinned to nodes?) and the capacity planner
(how many replicas does a stream target need, and does it fit ``maxReplicas``?). A CPU pool
gets no capacity at all (no figure exists to give), its image, its backend and, when the CR
sets none, default CPU/memory (an unbounded onnxruntime pod would be first to be evicted and
would size its thread pool by the node's cores). Problems come
back one line per field, ``spec.pools[1].maxReplicas: ...``, and the CR goes Stalled with that
text; nothing the deployment already serves is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rtdetr_operator.api.deployment import Pool, RTDETRDeploymentSpec
from rtdetr_operator.api.deployment_rules import (
    CPU_BACKEND_GPU,
    CPU_STREAMS,
    CPU_TENSORRT,
    POOL_TENSORRT,
    SPEC_TENSORRT,
)
from rtdetr_operator.deployment.defaults import (
    CPU_POOL_CPU,
    CPU_POOL_MEMORY,
    DEFAULT_FPS,
    OperatorDefaults,
)
from rtdetr_operator.deployment.names import DeploymentNames
from rtdetr_operator.planning import InvalidSpecError, field_problems
from rtdetr_operator.policy import pod_metadata_problems, volume_problems
from rtdetr_serving.catalog import CPU_DEVICE, CpuBackend, CpuDevice, GpuCatalog, GpuType
from rtdetr_serving.errors import PlanningError, UnknownGpuError
from rtdetr_serving.planner import Measurement, capacity, plan_replicas
from rtdetr_spec.sources.uri import SourceURIError, parse


class InvalidDeploymentError(InvalidSpecError):
    """An RTDETRDeployment that cannot be served."""


@dataclass(frozen=True)
class ResolvedPool:
    """A pool with its replica limits, image, resources and (GPU pools) capacity decided."""

    index: int
    spec: Pool
    device: GpuType | CpuDevice
    min_replicas: int
    max_replicas: int
    #: tritonserver image of the pool's pods.
    image: str
    #: TensorRT its image serves with (its engine is built with it); None for a CPU pool.
    tensorrt_version: str | None
    #: CPU/memory of the Triton container (requests = limits), None: unset.
    cpu: str | None = None
    memory: str | None = None
    #: Capacity from the planner; all None for a CPU pool (there is no figure to give).
    fps: float | None = None
    streams_per_replica: int | None = None
    capacity_source: str | None = None
    target_streams: int | None = None
    #: How a CPU pool's Triton runs the ONNX; None for a GPU pool.
    cpu_backend: CpuBackend | None = None

    @property
    def field(self) -> str:
        return f"spec.pools[{self.index}]"

    @property
    def name(self) -> str:
        """Catalog name of the pool's device type (``H100``, ``CPU``)."""
        return self.device.name

    @property
    def gpu(self) -> GpuType | None:
        """The GPU type, None for a CPU pool."""
        return self.device if isinstance(self.device, GpuType) else None

    @property
    def is_cpu(self) -> bool:
        return isinstance(self.device, CpuDevice)

    @property
    def config_name(self) -> str:
        """The Triton config the pool's pods load (``--model-config-name``)."""
        if isinstance(self.device, CpuDevice):
            return self.device.config_name(self.cpu_backend or "onnxruntime")
        return self.device.config_name

    @property
    def backend(self) -> str:
        """tensorrt, onnxruntime or python."""
        return self.cpu_backend or "tensorrt"


@dataclass(frozen=True)
class ResolvedDeployment:
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: RTDETRDeploymentSpec
    names: DeploymentNames
    pools: tuple[ResolvedPool, ...]
    triton_image: str
    #: TensorRT of triton_image; None when a custom image declares none (no GPU pool uses it).
    tensorrt_version: str | None

    @property
    def gpus(self) -> list[str]:
        """Device types of the pools, sorted (the repository's device set, CPU included)."""
        return sorted(p.name for p in self.pools)

    @property
    def gpu_pools(self) -> tuple[ResolvedPool, ...]:
        """Pools that need a TensorRT engine."""
        return tuple(p for p in self.pools if not p.is_cpu)

    def pool(self, gpu: str) -> ResolvedPool | None:
        return next((p for p in self.pools if p.name == gpu), None)


def _is_cpu(pool: Pool) -> bool:
    return pool.gpu.strip().upper() == CPU_DEVICE


def cel_problems(spec: RTDETRDeploymentSpec) -> list[str]:
    """The CRD's CEL rules, re-checked with the API server's wording."""
    out: list[str] = []
    model = spec.model
    if sum(m is not None for m in (model.training, model.onnx, model.uri)) != 1:
        out.append("spec.model: set exactly one model source: training, onnx or uri")
    if model.onnx is not None:
        onnx = model.onnx
        if (onnx.claim_name is None) == (onnx.volume is None):
            out.append("spec.model.onnx: set exactly one of claimName or volume")
        if onnx.path.startswith("/") or ".." in onnx.path or not onnx.path.endswith(".onnx"):
            out.append(
                "spec.model.onnx.path: must be a relative path inside the volume, without "
                "'..', ending in .onnx"
            )
    for i, pool in enumerate(spec.pools):
        at = f"spec.pools[{i}]"
        if pool.min_replicas and pool.max_replicas and pool.min_replicas > pool.max_replicas:
            out.append(f"{at}.minReplicas: must not exceed maxReplicas")
        if (pool.streams is None) != (pool.fps is None):
            out.append(f"{at}.streams: streams and fps go together")
        cpu = _is_cpu(pool)
        if cpu and (pool.streams is not None or pool.fps is not None):
            out.append(f"{at}.streams: {CPU_STREAMS}")
        if not cpu and pool.cpu_backend is not None:
            out.append(f"{at}.cpuBackend: {CPU_BACKEND_GPU}")
        if cpu and pool.tensorrt_version is not None:
            out.append(f"{at}.tensorrtVersion: {CPU_TENSORRT}")
        if not cpu and pool.image is not None and pool.tensorrt_version is None:
            out.append(f"{at}.tensorrtVersion: {POOL_TENSORRT}")
    seen: set[str] = set()
    for i, pool in enumerate(spec.pools):
        if pool.gpu in seen:
            out.append(f"spec.pools[{i}]: Duplicate value: {{gpu: {pool.gpu}}}")
        seen.add(pool.gpu)
    uses_spec_image = any(not _is_cpu(p) and p.image is None for p in spec.pools)
    if spec.triton.image and not spec.triton.tensorrt_version and uses_spec_image:
        out.append(f"spec.triton.tensorrtVersion: {SPEC_TENSORRT}")
    ro = spec.rollout
    if str(ro.max_surge) in ("0", "0%") and str(ro.max_unavailable) in ("0", "0%"):
        out.append("spec.rollout.maxSurge: maxSurge and maxUnavailable cannot both be 0")
    pdb = ro.disruption_budget
    if pdb.min_available is not None and pdb.max_unavailable is not None:
        out.append(
            "spec.rollout.disruptionBudget: set at most one of minAvailable or maxUnavailable"
        )
    return out


def _resources(
    spec: RTDETRDeploymentSpec, pool: Pool, cpu_pool: bool
) -> tuple[str | None, str | None]:
    """The pool's, else spec.triton's; a CPU pool with neither gets CPU_POOL_CPU/MEMORY."""
    res, common = pool.resources, spec.triton.resources
    cpu = res.cpu if res.cpu is not None else common.cpu
    memory = res.memory if res.memory is not None else common.memory
    if cpu_pool:
        cpu = cpu if cpu is not None else CPU_POOL_CPU
        memory = memory if memory is not None else CPU_POOL_MEMORY
    return (str(cpu) if cpu is not None else None), (str(memory) if memory is not None else None)


def resolve_pool(
    i: int,
    pool: Pool,
    catalog: GpuCatalog,
    spec: RTDETRDeploymentSpec,
    image: str,
    tensorrt_version: str | None,
    measurement: Measurement | None = None,
) -> ResolvedPool:
    """Replica limits and capacity of one pool (raises InvalidDeploymentError naming fields).

    ``image`` / ``tensorrt_version``: the deployment's Triton image and its TensorRT, for a
    pool without its own image.
    """
    where = f"spec.pools[{i}]"
    try:
        device = catalog.device(pool.gpu)
    except UnknownGpuError as e:
        raise InvalidDeploymentError([f"{where}.gpu: {e}"]) from None
    cpu, memory = _resources(spec, pool, isinstance(device, CpuDevice))
    if isinstance(device, CpuDevice):
        low = pool.min_replicas or 1
        return ResolvedPool(
            index=i,
            spec=pool,
            device=device,
            min_replicas=low,
            max_replicas=pool.max_replicas or low,
            image=pool.image or image,
            tensorrt_version=None,
            cpu=cpu,
            memory=memory,
            cpu_backend=pool.cpu_backend or "onnxruntime",
        )
    gpu = device
    if not gpu.gpu_product_labels:
        raise InvalidDeploymentError(
            [
                f"{where}.gpu: the catalog names no nvidia.com/gpu.product values for "
                f"{gpu.name}, so its pods cannot be pinned to its nodes; add them to the catalog"
            ]
        )
    common: dict[str, Any] = {
        "index": i,
        "spec": pool,
        "device": gpu,
        "image": pool.image or image,
        "tensorrt_version": pool.tensorrt_version if pool.image else tensorrt_version,
        "cpu": cpu,
        "memory": memory,
    }
    fps = pool.fps if pool.fps is not None else DEFAULT_FPS
    try:
        if pool.streams is None:
            cap = capacity(gpu, fps, measurement)
            low = pool.min_replicas or 1
            return ResolvedPool(
                **common,
                min_replicas=low,
                max_replicas=pool.max_replicas or low,
                fps=fps,
                streams_per_replica=cap.streams_per_gpu,
                capacity_source=cap.source,
            )
        plan = plan_replicas(gpu, fps, pool.streams, measurement=measurement)
    except PlanningError as e:
        raise InvalidDeploymentError([f"{where}.fps: {e}"]) from None
    need = plan.replicas
    low = pool.min_replicas or need
    high = pool.max_replicas or max(need, low)
    if high < need:
        raise InvalidDeploymentError(
            [
                f"{where}.maxReplicas: {pool.streams} streams at {fps:g} FPS need {need} "
                f"{gpu.name} replicas ({plan.streams_per_replica} streams each, "
                f"{plan.source}), above maxReplicas {high}; raise maxReplicas, lower the "
                "target or add a pool"
            ]
        )
    return ResolvedPool(
        **common,
        min_replicas=low,
        max_replicas=high,
        fps=fps,
        streams_per_replica=plan.streams_per_replica,
        capacity_source=plan.source,
        target_streams=pool.streams,
    )


def uri_problems(spec: RTDETRDeploymentSpec) -> list[str]:
    """What makes spec.model.uri unusable: a malformed URI, an https one without its sha256,
    a folder, or no repository claim (the model has no volume the repository could share)."""
    if spec.model.uri is None:
        return []
    uri = spec.model.uri.uri
    checksums = spec.sources.checksums if spec.sources else {}
    out = []
    try:
        source = parse(uri, sha256=checksums.get(uri))
        if source.is_folder or not source.name.endswith(".onnx"):
            out.append(f"spec.model.uri.uri: {uri!r}: name one .onnx file")
    except SourceURIError as e:
        out.append(f"spec.model.uri.uri: {e}")
    if not spec.repository.claim_name:
        out.append(
            "spec.repository.claimName: required with spec.model.uri (the fetched model has no "
            "volume to put the repositories next to)"
        )
    return out


def resolve(
    deployment: dict,
    catalog: GpuCatalog,
    defaults: OperatorDefaults,
    *,
    allow_node_volumes: bool = False,
    measurements: dict[str, Measurement] | None = None,
) -> ResolvedDeployment:
    """Validate ``deployment`` (a CR body) and resolve pools, images and names.

    ``allow_node_volumes`` lifts the refusal of node-level volume sources (policy.py).

    Raises:
        InvalidDeploymentError: naming every field that makes the CR unservable.
    """
    meta = deployment["metadata"]
    try:
        spec = RTDETRDeploymentSpec.model_validate(deployment.get("spec") or {})
    except ValidationError as e:
        raise InvalidDeploymentError(field_problems(e)) from None
    problems = cel_problems(spec) + pod_metadata_problems(deployment.get("spec") or {})
    onnx = spec.model.onnx
    if onnx is not None and onnx.volume is not None:
        problems += volume_problems(
            "spec.model.onnx.volume",
            onnx.volume.model_dump(by_alias=True, exclude_none=True),
            allow_node_volumes=allow_node_volumes,
        )
    problems += uri_problems(spec)
    custom = spec.triton.image is not None
    image = spec.triton.image if spec.triton.image is not None else defaults.triton_image
    tensorrt = spec.triton.tensorrt_version if custom else defaults.tensorrt_version
    pools: list[ResolvedPool] = []
    for i, pool in enumerate(spec.pools):
        try:
            m = (measurements or {}).get(pool.gpu)
            pools.append(resolve_pool(i, pool, catalog, spec, image, tensorrt, m))
        except InvalidDeploymentError as e:
            problems += e.problems
    if len({p.name for p in pools}) != len(pools) and not problems:
        problems.append("spec.pools: two pools name the same GPU type (by alias)")
    if problems:
        raise InvalidDeploymentError(problems)
    return ResolvedDeployment(
        name=meta["name"],
        namespace=meta.get("namespace", "default"),
        uid=meta.get("uid", ""),
        generation=meta.get("generation"),
        spec=spec,
        names=DeploymentNames(meta["name"], meta.get("namespace", "default")),
        pools=tuple(pools),
        triton_image=image,
        tensorrt_version=tensorrt,
    )
