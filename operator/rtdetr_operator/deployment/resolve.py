"""Validate an RTDETRDeployment and decide everything its spec leaves open.

The API server already refused what the CRD's schema and CEL can express; this re-checks those
rules (a cluster may run an older CRD) and adds what needs the operator's own knowledge: the GPU
catalog (is the GPU type known here, can its pods be pinned to nodes?) and the capacity planner
(how many replicas does a stream target need, and does it fit ``maxReplicas``?). Problems come
back one line per field, ``spec.pools[1].maxReplicas: ...``, and the CR goes Stalled with that
text; nothing the deployment already serves is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from rtdetr_operator.api.deployment import Pool, RTDETRDeploymentSpec
from rtdetr_operator.deployment.defaults import DEFAULT_FPS, OperatorDefaults
from rtdetr_operator.deployment.names import DeploymentNames
from rtdetr_serving.catalog import GpuCatalog, GpuType
from rtdetr_serving.errors import PlanningError, UnknownGpuError
from rtdetr_serving.planner import capacity, plan_replicas


class InvalidDeploymentError(ValueError):
    """A CR that cannot be served; ``problems`` are one line each, starting with the field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class ResolvedPool:
    """A pool with its replica limits and capacity decided."""

    index: int
    spec: Pool
    gpu: GpuType
    min_replicas: int
    max_replicas: int
    fps: float
    streams_per_replica: int
    capacity_source: str
    target_streams: int | None

    @property
    def field(self) -> str:
        return f"spec.pools[{self.index}]"


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
    tensorrt_version: str

    @property
    def gpus(self) -> list[str]:
        """GPU types of the pools, sorted (the repository's GPU set)."""
        return sorted(p.gpu.name for p in self.pools)

    def pool(self, gpu: str) -> ResolvedPool | None:
        return next((p for p in self.pools if p.gpu.name == gpu), None)


def _pydantic_problems(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        lines.append(f"spec.{where}: {e['msg'].removeprefix('Value error, ')}")
    return lines


def cel_problems(spec: RTDETRDeploymentSpec) -> list[str]:
    """The CRD's CEL rules, re-checked with the API server's wording."""
    out: list[str] = []
    model = spec.model
    if (model.training is None) == (model.onnx is None):
        out.append("spec.model: set exactly one model source: training or onnx")
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
        if pool.min_replicas and pool.max_replicas and pool.min_replicas > pool.max_replicas:
            out.append(f"spec.pools[{i}].minReplicas: must not exceed maxReplicas")
        if (pool.streams is None) != (pool.fps is None):
            out.append(f"spec.pools[{i}].streams: streams and fps go together")
    seen: set[str] = set()
    for i, pool in enumerate(spec.pools):
        if pool.gpu in seen:
            out.append(f"spec.pools[{i}]: Duplicate value: {{gpu: {pool.gpu}}}")
        seen.add(pool.gpu)
    if spec.triton.image and not spec.triton.tensorrt_version:
        out.append("spec.triton.tensorrtVersion: is required with a custom image")
    ro = spec.rollout
    if str(ro.max_surge) in ("0", "0%") and str(ro.max_unavailable) in ("0", "0%"):
        out.append("spec.rollout.maxSurge: maxSurge and maxUnavailable cannot both be 0")
    pdb = ro.disruption_budget
    if pdb.min_available is not None and pdb.max_unavailable is not None:
        out.append(
            "spec.rollout.disruptionBudget: set at most one of minAvailable or maxUnavailable"
        )
    return out


def resolve_pool(i: int, pool: Pool, catalog: GpuCatalog) -> ResolvedPool:
    """Replica limits and capacity of one pool (raises InvalidDeploymentError naming fields)."""
    where = f"spec.pools[{i}]"
    try:
        gpu = catalog.get(pool.gpu)
    except UnknownGpuError as e:
        raise InvalidDeploymentError([f"{where}.gpu: {e}"]) from None
    if not gpu.gpu_product_labels:
        raise InvalidDeploymentError(
            [
                f"{where}.gpu: the catalog names no nvidia.com/gpu.product values for "
                f"{gpu.name}, so its pods cannot be pinned to its nodes; add them to the catalog"
            ]
        )
    fps = pool.fps if pool.fps is not None else DEFAULT_FPS
    try:
        if pool.streams is None:
            cap = capacity(gpu, fps)
            low = pool.min_replicas or 1
            return ResolvedPool(
                index=i,
                spec=pool,
                gpu=gpu,
                min_replicas=low,
                max_replicas=pool.max_replicas or low,
                fps=fps,
                streams_per_replica=cap.streams_per_gpu,
                capacity_source=cap.source,
                target_streams=None,
            )
        plan = plan_replicas(gpu, fps, pool.streams)
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
        index=i,
        spec=pool,
        gpu=gpu,
        min_replicas=low,
        max_replicas=high,
        fps=fps,
        streams_per_replica=plan.streams_per_replica,
        capacity_source=plan.source,
        target_streams=pool.streams,
    )


def resolve(
    deployment: dict, catalog: GpuCatalog, defaults: OperatorDefaults
) -> ResolvedDeployment:
    """Validate ``deployment`` (a CR body) and resolve pools, images and names.

    Raises:
        InvalidDeploymentError: naming every field that makes the CR unservable.
    """
    meta = deployment["metadata"]
    try:
        spec = RTDETRDeploymentSpec.model_validate(deployment.get("spec") or {})
    except ValidationError as e:
        raise InvalidDeploymentError(_pydantic_problems(e)) from None
    problems = cel_problems(spec)
    pools: list[ResolvedPool] = []
    for i, pool in enumerate(spec.pools):
        try:
            pools.append(resolve_pool(i, pool, catalog))
        except InvalidDeploymentError as e:
            problems += e.problems
    if len({p.gpu.name for p in pools}) != len(pools) and not problems:
        problems.append("spec.pools: two pools name the same GPU type (by alias)")
    if problems:
        raise InvalidDeploymentError(problems)
    custom = spec.triton.image is not None
    return ResolvedDeployment(
        name=meta["name"],
        namespace=meta.get("namespace", "default"),
        uid=meta.get("uid", ""),
        generation=meta.get("generation"),
        spec=spec,
        names=DeploymentNames(meta["name"], meta.get("namespace", "default")),
        pools=tuple(pools),
        triton_image=spec.triton.image if custom else defaults.triton_image,  # type: ignore[arg-type]
        tensorrt_version=(spec.triton.tensorrt_version if custom else defaults.tensorrt_version),  # type: ignore[arg-type]
    )
