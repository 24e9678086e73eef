"""The GPU catalog: which GPU types RT-DETR is served on, how fast, and how engines are sized.

The built-in catalog (``data/gpus.yaml``) carries every GPU of the model card's throughput table.
Users extend or override it with their own YAML files (``--catalog FILE`` or the environment
variable ``RTDETR_GPU_CATALOG``, several paths separated by ``os.pathsep``); entries are merged by
``name``: fields given in a later file replace those of the same entry, new names are appended.

Lookups accept the short name (``H100``), an alias or display name (case-insensitive) or a
``nvidia.com/gpu.product`` label value (``NVIDIA-H100-80GB-HBM3``); unknown keys raise
``UnknownGpuError`` with close matches. Torch-free: the operator imports this module.

Besides the GPUs, the catalog has one CPU device type, ``CPU`` (:class:`CpuDevice`): Triton runs
the exported ONNX with onnxruntime, no engine is built. It has no GPU products, no engine
profile and, on purpose, no capacity figure: CPU throughput depends on the host's cores and
instruction set, and the model card measured none, so nothing here may turn camera streams into
CPU replicas (measure with ``rtdetr-serve bench`` instead). ``get()`` keeps returning GPUs only
(a CPU name raises :class:`NotAGpuError`); ``device()`` resolves either kind.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rtdetr_serving.catalog_estimate import Estimate, fill_estimates
from rtdetr_serving.errors import AmbiguousGpuError, CatalogError, NotAGpuError, UnknownGpuError

CATALOG_FORMAT = "rtdetr-gpu-catalog/v1"
CATALOG_ENV = "RTDETR_GPU_CATALOG"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CC_RE = re.compile(r"^\d+\.\d+$")
#: Name of the catalog's CPU device type (what ``pools[].gpu`` and ``--gpu`` say for CPU).
CPU_DEVICE: Final = "CPU"
#: How Triton runs the ONNX on CPU: its onnxruntime backend, or its python backend running
#: onnxruntime inside the model (for tritonserver builds without the onnxruntime backend).
CPU_BACKENDS: tuple[str, ...] = ("onnxruntime", "python")
CpuBackend = Literal["onnxruntime", "python"]


class ModelCardStreams(BaseModel):
    """Camera streams one GPU sustains at 30 and 15 FPS (the model card's table)."""

    model_config = ConfigDict(extra="forbid")

    fps30: int | None = Field(default=None, ge=0)
    fps15: int | None = Field(default=None, ge=0)


class EngineDefaults(BaseModel):
    """TensorRT profile and Triton sizing for one GPU type (defaults, not measurements)."""

    model_config = ConfigDict(extra="forbid")

    min_batch: int = Field(default=1, ge=1)
    opt_batch: int = Field(ge=1)
    max_batch: int = Field(ge=1)
    #: Triton ``instance_group.count`` (execution contexts of the plan on one GPU).
    instances: int = Field(default=1, ge=1)
    #: TensorRT builder workspace memory-pool limit.
    workspace_gib: float = Field(default=4, gt=0)
    #: Triton dynamic batcher's ``max_queue_delay_microseconds``.
    max_queue_delay_us: int = Field(default=1000, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> EngineDefaults:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"engine batches must satisfy min_batch <= opt_batch <= max_batch, got "
                f"{self.min_batch} / {self.opt_batch} / {self.max_batch}"
            )
        return self

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))

    def preferred_batch_sizes(self) -> list[int]:
        """Batch sizes the dynamic batcher aims for: the profile's opt and max."""
        return sorted({self.opt_batch, self.max_batch})


class GpuType(BaseModel):
    """One GPU type of the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Short name used on the command line, in file names and in the operator's pools.
    name: str
    display_name: str
    aliases: list[str] = Field(default_factory=list)
    gpu_product_labels: list[str] = Field(default_factory=list)
    architecture: str | None = None
    #: CUDA compute capability "major.minor" (what TensorRT plans and cc_model_filenames key on).
    compute_capability: str
    memory_gib: float = Field(gt=0)
    #: True for iGPUs that share system memory (Jetson, IGX, DGX Spark).
    shared_memory: bool = False
    streams: ModelCardStreams = Field(default_factory=ModelCardStreams)
    #: Measured throughput in images/s at the engine's batch sizes, for entries without a table.
    throughput_ips: float | None = Field(default=None, gt=0)
    #: Set when the capacity is an estimate, not a measurement (catalog_estimate.py).
    estimate: Estimate | None = None
    engine: EngineDefaults

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"name {v!r} must be letters, digits, '.', '_' or '-'")
        return v

    @field_validator("compute_capability", mode="before")
    @classmethod
    def _cc(cls, v: Any) -> str:
        v = str(v)
        if not _CC_RE.match(v):
            raise ValueError(f"compute_capability {v!r} must look like '9.0'")
        return v

    @model_validator(mode="after")
    def _capacity_known(self) -> GpuType:
        s30, s15 = self.streams.fps30, self.streams.fps15
        if s30 is None and s15 is None and self.throughput_ips is None:
            raise ValueError("give streams.fps30/fps15 or throughput_ips")
        if s30 is not None and s15 is not None:
            # Each table value is floor(T / fps): T lies in [30*s30, 30*(s30+1)) and in
            # [15*s15, 15*(s15+1)); a table whose intervals do not meet is self-contradictory.
            lo, hi = max(30 * s30, 15 * s15), min(30 * (s30 + 1), 15 * (s15 + 1))
            if lo >= hi:
                raise ValueError(
                    f"streams fps30={s30} and fps15={s15} imply no common throughput "
                    f"(30*{s30}..{30 * (s30 + 1)} vs 15*{s15}..{15 * (s15 + 1)} images/s)"
                )
        return self

    @property
    def config_name(self) -> str:
        """Name of this GPU's Triton config file (``configs/<config_name>.pbtxt``)."""
        return self.name.lower()

    @property
    def plan_filename(self) -> str:
        """File name of this GPU's TensorRT plan inside the model version folder."""
        return f"model.{self.name}.plan"

    def throughput_lower_bound(self) -> float:
        """Images/s this GPU sustains at least, from every capacity figure it carries."""
        bounds = [
            30.0 * self.streams.fps30 if self.streams.fps30 is not None else 0.0,
            15.0 * self.streams.fps15 if self.streams.fps15 is not None else 0.0,
            self.throughput_ips or 0.0,
        ]
        return max(bounds)


class CpuServing(BaseModel):
    """Triton sizing of the CPU configs: starting points, not measurements (no GPU, no plan)."""

    model_config = ConfigDict(extra="forbid")

    #: ``max_batch_size`` of the CPU configs (one dynamic-batcher batch, [B, 3, H, W]).
    max_batch: int = Field(default=4, ge=1)
    #: Triton ``instance_group { kind: KIND_CPU count }``: onnxruntime sessions per server.
    instances: int = Field(default=1, ge=1)
    max_queue_delay_us: int = Field(default=2000, ge=0)
    #: onnxruntime intra-op threads written into the configs; 0 leaves it to onnxruntime (a
    #: pod may still set it from its CPU limit, see docs/deployment.md).
    threads: int = Field(default=0, ge=0)


class CpuDevice(BaseModel):
    """The CPU device type: no GPU products, no engine, no capacity figure (see module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["CPU"] = CPU_DEVICE
    display_name: str = "CPU (onnxruntime)"
    aliases: list[str] = Field(default_factory=list)
    serving: CpuServing = Field(default_factory=CpuServing)

    @staticmethod
    def config_name(backend: str) -> str:
        """Triton config of ``backend`` (``configs/cpu-onnxruntime.pbtxt``, ``cpu-python``)."""
        if backend not in CPU_BACKENDS:
            known = ", ".join(CPU_BACKENDS)
            raise CatalogError(f"unknown CPU backend {backend!r} (known: {known})")
        return f"cpu-{backend}"

    def lookup_keys(self) -> set[str]:
        return {_norm(k) for k in (self.name, self.display_name, *self.aliases)}


def _norm(key: str) -> str:
    return re.sub(r"[\s_]+", "-", key.strip()).upper()


def strip_shared_suffix(label: str) -> str:
    """GPU Feature Discovery appends ``-SHARED`` under time-slicing; the product is the same."""
    return label[: -len("-SHARED")] if label.upper().endswith("-SHARED") else label


class GpuCatalog(BaseModel):
    """All known GPU types with name/alias/label lookups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["rtdetr-gpu-catalog/v1"] = CATALOG_FORMAT
    source: str | None = None
    gpus: list[GpuType]
    cpu: CpuDevice = Field(default_factory=CpuDevice)

    @model_validator(mode="after")
    def _unique_keys(self) -> GpuCatalog:
        seen: dict[str, str] = {k: CPU_DEVICE for k in self.cpu.lookup_keys()}
        for g in self.gpus:
            for key in {_norm(g.name), _norm(g.display_name), *map(_norm, g.aliases)}:
                if key in seen and seen[key] != g.name:
                    raise ValueError(f"name/alias {key!r} is used by both {seen[key]} and {g.name}")
                seen[key] = g.name
        return self

    @cached_property
    def _by_key(self) -> dict[str, GpuType]:
        out: dict[str, GpuType] = {}
        for g in self.gpus:
            for key in (g.name, g.display_name, *g.aliases):
                out[_norm(key)] = g
        return out

    @cached_property
    def _by_label(self) -> dict[str, list[GpuType]]:
        out: dict[str, list[GpuType]] = {}
        for g in self.gpus:
            for label in g.gpu_product_labels:
                out.setdefault(label.upper(), []).append(g)
        return out

    def names(self) -> list[str]:
        return [g.name for g in self.gpus]

    def by_label(self, label: str) -> list[GpuType]:
        """Every entry whose ``nvidia.com/gpu.product`` values include ``label``."""
        return list(self._by_label.get(strip_shared_suffix(label).upper(), []))

    def is_cpu(self, key: str) -> bool:
        return _norm(key) in self.cpu.lookup_keys()

    def device(self, key: str) -> GpuType | CpuDevice:
        """A GPU (as :meth:`get`) or the CPU device type."""
        return self.cpu if self.is_cpu(key) else self.get(key)

    def get(self, key: str) -> GpuType:
        """Resolve a short name, alias, display name or ``gpu.product`` label to one entry."""
        if self.is_cpu(key):
            raise NotAGpuError(
                f"{key!r} is the CPU device type: it has no GPU, no TensorRT engine and no "
                "capacity figure (measure CPU throughput with rtdetr-serve bench)"
            )
        hit = self._by_key.get(_norm(key))
        if hit is not None:
            return hit
        by_label = self.by_label(key)
        if len(by_label) == 1:
            return by_label[0]
        if len(by_label) > 1:
            names = ", ".join(g.name for g in by_label)
            raise AmbiguousGpuError(
                f"GPU label {key!r} is shared by {names}; name the GPU type instead"
            )
        candidates = (
            [g.name for g in self.gpus]
            + [label for g in self.gpus for label in g.gpu_product_labels]
            + [self.cpu.name]
        )
        close = difflib.get_close_matches(
            key.upper(), [c.upper() for c in candidates], n=3, cutoff=0.5
        )
        original = {c.upper(): c for c in candidates}
        hint = f"; did you mean {', '.join(original[c] for c in close)}?" if close else ""
        raise UnknownGpuError(
            f"unknown GPU {key!r}{hint} (known: {', '.join(self.names())}; "
            f"{self.cpu.name} serves without a GPU)"
        )

    def select(self, keys: Sequence[str] | None) -> list[GpuType]:
        """Entries for ``keys`` (all entries when None or empty), de-duplicated in order."""
        if not keys:
            return list(self.gpus)
        out: list[GpuType] = []
        for k in keys:
            g = self.get(k)
            if g not in out:
                out.append(g)
        return out

    def select_devices(self, keys: Sequence[str]) -> tuple[list[GpuType], CpuDevice | None]:
        """GPU entries for ``keys`` (de-duplicated, in order) and the CPU type if named."""
        gpu_keys = [k for k in keys if not self.is_cpu(k)]
        cpu = self.cpu if len(gpu_keys) < len(keys) else None
        return (self.select(gpu_keys) if gpu_keys else []), cpu


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{path}: GPU catalog file not found") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {e}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("gpus", []), list)
        or not isinstance(data.get("cpu", {}), dict)
        or ("gpus" not in data and "cpu" not in data)
    ):
        raise CatalogError(
            f"{path}: a GPU catalog is a mapping with a 'gpus' list (and/or a 'cpu' mapping)"
        )
    return data


def _merge_entry(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def builtin_catalog_path() -> Path:
    return Path(str(resources.files("rtdetr_serving") / "data" / "gpus.yaml"))


def catalog_paths_from_env() -> list[Path]:
    raw = os.environ.get(CATALOG_ENV, "")
    return [Path(p) for p in raw.split(os.pathsep) if p.strip()]


def load_catalog(
    extra: Iterable[str | Path] = (), *, use_env: bool = True, builtin: bool = True
) -> GpuCatalog:
    """The built-in catalog, then ``$RTDETR_GPU_CATALOG`` files, then ``extra`` files, merged."""
    paths = ([builtin_catalog_path()] if builtin else []) + (
        catalog_paths_from_env() if use_env else []
    )
    paths += [Path(p) for p in extra]
    if not paths:
        raise CatalogError("no GPU catalog given")
    entries: dict[str, dict[str, Any]] = {}
    cpu: dict[str, Any] = {}
    source = None
    for path in paths:
        data = _read_yaml(path)
        fmt = data.get("format", CATALOG_FORMAT)
        if fmt != CATALOG_FORMAT:
            raise CatalogError(f"{path}: format {fmt!r} is not {CATALOG_FORMAT!r}")
        source = source or data.get("source")
        cpu = _merge_entry(cpu, data.get("cpu") or {})
        for i, entry in enumerate(data.get("gpus", [])):
            if not isinstance(entry, dict) or "name" not in entry:
                raise CatalogError(f"{path}: gpus[{i}] needs a 'name'")
            name = str(entry["name"])
            entries[name] = _merge_entry(entries[name], entry) if name in entries else entry
    where = ", ".join(map(str, paths))
    fill_estimates(entries)
    gpus = []
    for name, entry in entries.items():
        try:
            gpus.append(GpuType.model_validate(entry))
        except ValidationError as e:
            raise CatalogError(f"GPU catalog entry {name!r} ({where}): {_errors(e)}") from None
    try:
        device = CpuDevice.model_validate(cpu)
    except ValidationError as e:
        raise CatalogError(f"GPU catalog entry 'cpu' ({where}): {_errors(e)}") from None
    try:
        return GpuCatalog(format=CATALOG_FORMAT, source=source, gpus=gpus, cpu=device)
    except ValidationError as e:
        raise CatalogError(f"invalid GPU catalog ({where}): {_errors(e)}") from None


def _errors(e: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<entry>'}: {err['msg']}" for err in e.errors()
    )
