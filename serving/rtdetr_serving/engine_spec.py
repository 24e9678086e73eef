"""What a TensorRT FP16 engine build is, independent of how it runs: profiles, flags, sidecar.

Pure logic (no TensorRT, no GPU), shared by the two builders in ``engine_build`` (the
``tensorrt`` Python API and ``trtexec``) and unit-tested here on any machine.

The TensorRT-version rule: a plan runs only under the TensorRT version that built it (major,
minor and patch; TensorRT's default, without version-compatible builds) and only on GPUs of the
compute capability it was built for. Every plan gets a sidecar ``<plan>.json`` recording both;
the operator compares it with the serving pool's image and GPU before any Triton loads it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtdetr_serving.catalog import GpuType
from rtdetr_serving.contract import ModelContract
from rtdetr_serving.errors import EngineError, ModelContractError, TensorRTVersionError
from rtdetr_spec.artifacts import ExportManifest, atomic_write_text, sha256_file

SIDECAR_FORMAT = "rtdetr-trt-engine/v1"


class OptimizationProfile(BaseModel):
    """Shapes of the input tensor TensorRT optimises for: [batch, 3, H, W] at min/opt/max."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_name: str
    min_shape: tuple[int, int, int, int]
    opt_shape: tuple[int, int, int, int]
    max_shape: tuple[int, int, int, int]

    @classmethod
    def for_batches(
        cls, input_name: str, chw: tuple[int, int, int], min_b: int, opt_b: int, max_b: int
    ) -> OptimizationProfile:
        if not 1 <= min_b <= opt_b <= max_b:
            raise EngineError(
                f"profile batches must satisfy 1 <= min <= opt <= max, got {min_b}/{opt_b}/{max_b}"
            )
        return cls(
            input_name=input_name,
            min_shape=(min_b, *chw),
            opt_shape=(opt_b, *chw),
            max_shape=(max_b, *chw),
        )

    @property
    def max_batch(self) -> int:
        return self.max_shape[0]

    def trtexec_shape(self, which: Literal["min", "opt", "max"]) -> str:
        shape = {"min": self.min_shape, "opt": self.opt_shape, "max": self.max_shape}[which]
        return f"{self.input_name}:{'x'.join(map(str, shape))}"


class EngineBuildSpec(BaseModel):
    """Everything a builder needs; built by ``build_spec`` from the catalog and the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    onnx: Path
    onnx_sha256: str
    gpu: str
    compute_capability: str
    output_dir: Path
    plan_filename: str
    profile: OptimizationProfile
    workspace_bytes: int = Field(gt=0)
    fp16: bool = True
    timing_cache: Path | None = None

    @property
    def plan_path(self) -> Path:
        return self.output_dir / self.plan_filename

    @property
    def sidecar_path(self) -> Path:
        return EngineSidecar.path_for(self.plan_path)


def build_spec(
    gpu: GpuType,
    manifest: ExportManifest,
    onnx: str | Path,
    output_dir: str | Path,
    *,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    workspace_gib: float | None = None,
    timing_cache: str | Path | None = None,
    verify_onnx: bool = True,
) -> EngineBuildSpec:
    """The build for ``gpu``: profile batches and workspace from the catalog unless overridden."""
    contract = ModelContract.from_manifest(manifest, where=str(ExportManifest.path_for(onnx)))
    onnx = Path(onnx)
    if verify_onnx:
        digest = sha256_file(onnx)
        if digest != manifest.onnx_sha256:
            raise ModelContractError(
                f"{onnx}: sha256 {digest} does not match its manifest's {manifest.onnx_sha256}"
            )
    e = gpu.engine
    profile = OptimizationProfile.for_batches(
        contract.input.name,
        (3, contract.height, contract.width),
        min_batch or e.min_batch,
        opt_batch or e.opt_batch,
        max_batch or e.max_batch,
    )
    ws = int((workspace_gib if workspace_gib is not None else e.workspace_gib) * (1 << 30))
    return EngineBuildSpec(
        onnx=onnx,
        onnx_sha256=manifest.onnx_sha256,
        gpu=gpu.name,
        compute_capability=gpu.compute_capability,
        output_dir=Path(output_dir),
        plan_filename=gpu.plan_filename,
        profile=profile,
        workspace_bytes=ws,
        timing_cache=Path(timing_cache) if timing_cache else None,
    )


def trtexec_command(
    spec: EngineBuildSpec, trtexec: str = "trtexec", *, plan: Path | None = None
) -> list[str]:
    """The ``trtexec`` command line that builds ``spec`` (TensorRT 10 flags)."""
    p = spec.profile
    cmd = [
        trtexec,
        f"--onnx={spec.onnx}",
        f"--saveEngine={plan or spec.plan_path}",
        f"--minShapes={p.trtexec_shape('min')}",
        f"--optShapes={p.trtexec_shape('opt')}",
        f"--maxShapes={p.trtexec_shape('max')}",
        # trtexec takes the pool size in MiB when no unit is given; be explicit.
        f"--memPoolSize=workspace:{max(1, spec.workspace_bytes >> 20)}M",
        "--skipInference",
    ]
    if spec.fp16:
        cmd.append("--fp16")
    if spec.timing_cache is not None:
        cmd.append(f"--timingCacheFile={spec.timing_cache}")
    return cmd


_TRTEXEC_VERSION = re.compile(r"\[TensorRT v(\d+)\]")


def parse_trtexec_version(output: str) -> str | None:
    """``&&&& RUNNING TensorRT.trtexec [TensorRT v100300]`` -> ``10.3.0``.

    The number is NV_TENSORRT_VERSION: major*10000 + minor*100 + patch from TensorRT 10 on,
    major*1000 + minor*100 + patch before.
    """
    m = _TRTEXEC_VERSION.search(output)
    if not m:
        return None
    n = int(m.group(1))
    if n >= 100000:
        major, rest = divmod(n, 10000)
    else:
        major, rest = divmod(n, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


class EngineSidecar(BaseModel):
    """Written next to every plan as ``<plan>.json``: what it was built from, by what, for what."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["rtdetr-trt-engine/v1"] = SIDECAR_FORMAT
    tensorrt_version: str
    builder: Literal["tensorrt-python", "trtexec"]
    gpu: str
    gpu_device_name: str
    compute_capability: str
    precision: Literal["fp16", "fp32"]
    profiles: list[OptimizationProfile]
    workspace_bytes: int
    onnx_file: str
    onnx_sha256: str
    plan_file: str
    plan_sha256: str
    plan_bytes: int
    built_at: str
    build_seconds: float

    @staticmethod
    def path_for(plan: str | Path) -> Path:
        p = Path(plan)
        return p.with_name(p.name + ".json")

    @classmethod
    def read(cls, path: str | Path) -> EngineSidecar:
        return cls.model_validate_json(Path(path).read_text())

    def write(self, plan: str | Path) -> Path:
        path = self.path_for(plan)
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path


def make_sidecar(
    spec: EngineBuildSpec,
    *,
    plan: Path,
    tensorrt_version: str,
    builder: Literal["tensorrt-python", "trtexec"],
    gpu_device_name: str,
    compute_capability: str,
    build_seconds: float,
) -> EngineSidecar:
    return EngineSidecar(
        tensorrt_version=tensorrt_version,
        builder=builder,
        gpu=spec.gpu,
        gpu_device_name=gpu_device_name,
        compute_capability=compute_capability,
        precision="fp16" if spec.fp16 else "fp32",
        profiles=[spec.profile],
        workspace_bytes=spec.workspace_bytes,
        onnx_file=spec.onnx.name,
        onnx_sha256=spec.onnx_sha256,
        plan_file=plan.name,
        plan_sha256=sha256_file(plan),
        plan_bytes=plan.stat().st_size,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_seconds=round(build_seconds, 3),
    )


def _mmp(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def same_tensorrt(a: str, b: str) -> bool:
    """Whether two TensorRT versions load each other's plans (major, minor and patch equal)."""
    return _mmp(a) == _mmp(b)


def check_tensorrt_version(found: str, expected: str | None, *, where: str) -> None:
    """Refuse to build (or keep) a plan with a TensorRT other than the serving one.

    ``expected`` is the version the Triton image serves with (None: no expectation). Raised
    before a plan is written, so a wrong builder image never leaves an unloadable plan behind.
    """
    if expected is not None and not same_tensorrt(found, expected):
        raise TensorRTVersionError(
            f"{where} has TensorRT {found}, but the Triton image serves with TensorRT "
            f"{expected}; a plan loads only under the TensorRT that built it: build in an image "
            "of the Triton image's NGC release (Dockerfile.trainer)"
        )


def reusable_plan(
    spec: EngineBuildSpec, *, compute_capability: str, tensorrt_version: str | None
) -> EngineSidecar | None:
    """An existing plan that is exactly what ``spec`` would build, else None.

    Same ONNX (sha256), GPU type, compute capability, precision, profile and workspace, the
    expected TensorRT version when one is given, and a plan file whose sha256 is the
    sidecar's. Lets a retried or repeated build Job report the plan instead of rebuilding.
    """
    try:
        sidecar = EngineSidecar.read(spec.sidecar_path)
    except (OSError, ValueError):
        return None
    same = (
        sidecar.onnx_sha256 == spec.onnx_sha256
        and sidecar.gpu == spec.gpu
        and sidecar.compute_capability == compute_capability
        and sidecar.precision == ("fp16" if spec.fp16 else "fp32")
        and sidecar.profiles == [spec.profile]
        and sidecar.workspace_bytes == spec.workspace_bytes
        and (tensorrt_version is None or same_tensorrt(sidecar.tensorrt_version, tensorrt_version))
    )
    if not same or not spec.plan_path.is_file():
        return None
    if sha256_file(spec.plan_path) != sidecar.plan_sha256:
        return None
    return sidecar
