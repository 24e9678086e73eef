"""Build TensorRT FP16 plans on the GPU that will run them, with the real TensorRT API or trtexec.

Plans are not portable across GPU architectures or TensorRT versions, so a build first reads the
local GPU (CUDA driver API through ctypes: no CUDA Python package needed) and refuses when its
compute capability differs from the requested catalog type, or when it is another product of the
same capability unless ``allow_same_cc`` is given. Either builder writes the plan atomically,
then the sidecar JSON (``engine_spec.EngineSidecar``). Nothing is ever produced without
TensorRT: a missing ``tensorrt`` module, ``trtexec`` binary or CUDA driver is an error.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rtdetr_serving.catalog import GpuType, strip_shared_suffix
from rtdetr_serving.engine_spec import (
    EngineBuildSpec,
    EngineSidecar,
    check_tensorrt_version,
    make_sidecar,
    parse_trtexec_version,
    reusable_plan,
    trtexec_command,
)
from rtdetr_serving.errors import EngineError, EngineToolMissingError, GpuMismatchError
from rtdetr_spec.artifacts import atomic_write_bytes

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{MAJOR,MINOR}


@dataclass(frozen=True)
class LocalGpu:
    index: int
    name: str
    compute_capability: str
    total_memory_bytes: int

    @property
    def product_label(self) -> str:
        """The ``nvidia.com/gpu.product`` value GPU Feature Discovery would write for it."""
        return self.name.replace(" ", "-")


def _cuda_call(lib: ctypes.CDLL, fn: str, *args: object) -> None:
    res = getattr(lib, fn)(*args)
    if res != 0:
        msg = ctypes.c_char_p()
        lib.cuGetErrorString(res, ctypes.byref(msg))
        text = msg.value.decode() if msg.value else f"CUresult {res}"
        raise EngineToolMissingError(f"CUDA driver call {fn} failed: {text}")


def detect_local_gpu(index: int = 0) -> LocalGpu:
    """Name, compute capability and memory of CUDA device ``index`` (after CUDA_VISIBLE_DEVICES)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise EngineToolMissingError(
            "no CUDA driver on this machine (libcuda.so.1 not found): engines are built on the "
            "GPU node that will serve them"
        ) from None
    _cuda_call(lib, "cuInit", 0)
    count = ctypes.c_int()
    _cuda_call(lib, "cuDeviceGetCount", ctypes.byref(count))
    if index >= count.value:
        raise EngineToolMissingError(f"CUDA device {index} requested, {count.value} visible")
    dev = ctypes.c_int()
    _cuda_call(lib, "cuDeviceGet", ctypes.byref(dev), index)
    name = ctypes.create_string_buffer(256)
    _cuda_call(lib, "cuDeviceGetName", name, 256, dev)
    major, minor = ctypes.c_int(), ctypes.c_int()
    _cuda_call(lib, "cuDeviceGetAttribute", ctypes.byref(major), _CC_MAJOR, dev)
    _cuda_call(lib, "cuDeviceGetAttribute", ctypes.byref(minor), _CC_MINOR, dev)
    mem = ctypes.c_size_t()
    _cuda_call(lib, "cuDeviceTotalMem_v2", ctypes.byref(mem), dev)
    return LocalGpu(
        index=index,
        name=name.value.decode(),
        compute_capability=f"{major.value}.{minor.value}",
        total_memory_bytes=mem.value,
    )


def check_gpu_matches(gpu: GpuType, local: LocalGpu, *, allow_same_cc: bool = False) -> None:
    """Refuse to build ``gpu``'s plan on a different GPU."""
    if local.compute_capability != gpu.compute_capability:
        raise GpuMismatchError(
            f"engine for {gpu.name} (compute capability {gpu.compute_capability}) requested, but "
            f"this machine's GPU {index_name(local)} is compute capability "
            f"{local.compute_capability}; build on a {gpu.name} node"
        )
    labels = {label.upper() for label in gpu.gpu_product_labels}
    if (
        labels
        and strip_shared_suffix(local.product_label).upper() not in labels
        and not allow_same_cc
    ):
        raise GpuMismatchError(
            f"engine for {gpu.name} requested, but this machine's GPU {index_name(local)} is a "
            f"different product of the same compute capability {local.compute_capability}; "
            "TensorRT tunes kernels per device, so build on the target GPU or pass "
            "--allow-same-cc to accept it"
        )


def index_name(local: LocalGpu) -> str:
    return f"{local.index} ({local.name})"


def build_with_tensorrt(
    spec: EngineBuildSpec, local: LocalGpu, *, expect_tensorrt: str | None = None
) -> EngineSidecar:
    """Build with the ``tensorrt`` Python API: ONNX parser, FP16 flag, one optimization profile.

    ``expect_tensorrt`` (the serving TensorRT version) is checked before anything is built.
    """
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise EngineToolMissingError(
            "the 'tensorrt' Python package is not installed; build inside NVIDIA's TensorRT or "
            "Triton image, or use --trtexec"
        ) from None
    check_tensorrt_version(
        trt.__version__, expect_tensorrt, where="this image's tensorrt Python package"
    )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{spec.onnx}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    if spec.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    p = spec.profile
    profile = builder.create_optimization_profile()
    profile.set_shape(p.input_name, p.min_shape, p.opt_shape, p.max_shape)
    config.add_optimization_profile(profile)
    if spec.timing_cache is not None:
        blob = spec.timing_cache.read_bytes() if spec.timing_cache.exists() else b""
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    start = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - start
    if serialized is None:
        raise EngineError(f"{spec.onnx}: TensorRT built no engine (see its log above)")
    data = bytes(memoryview(serialized))
    # Load it back: a plan that does not deserialize with its own profile is not written.
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    if engine is None or engine.num_optimization_profiles != 1:
        raise EngineError(f"{spec.onnx}: the built engine does not deserialize with one profile")
    shapes = engine.get_tensor_profile_shape(p.input_name, 0)
    if tuple(shapes[2]) != p.max_shape:
        raise EngineError(f"engine profile max shape {tuple(shapes[2])} != requested {p.max_shape}")
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(spec.plan_path, data)
    if spec.timing_cache is not None:
        atomic_write_bytes(
            spec.timing_cache, bytes(memoryview(config.get_timing_cache().serialize()))
        )
    return _record(spec, local, trt.__version__, "tensorrt-python", seconds)


def _record(
    spec: EngineBuildSpec,
    local: LocalGpu,
    tensorrt_version: str,
    builder: Literal["tensorrt-python", "trtexec"],
    seconds: float,
) -> EngineSidecar:
    """Write the sidecar of the plan just put at ``spec.plan_path``: what built it, where."""
    sidecar = make_sidecar(
        spec,
        plan=spec.plan_path,
        tensorrt_version=tensorrt_version,
        builder=builder,
        gpu_device_name=local.name,
        compute_capability=local.compute_capability,
        build_seconds=seconds,
    )
    sidecar.write(spec.plan_path)
    return sidecar


def build_with_trtexec(
    spec: EngineBuildSpec,
    local: LocalGpu,
    trtexec: str = "trtexec",
    *,
    expect_tensorrt: str | None = None,
) -> EngineSidecar:
    """Build by running ``trtexec`` (the TensorRT of the image it ships in builds the plan).

    Its version is only known from its banner, so ``expect_tensorrt`` is checked after the
    build and a mismatching plan is discarded before it reaches the plan's path.
    """
    exe = shutil.which(trtexec)
    if exe is None:
        raise EngineToolMissingError(
            f"{trtexec!r} not found on PATH; it ships in NVIDIA's TensorRT and Triton images "
            "(/usr/src/tensorrt/bin/trtexec)"
        )
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    tmp = spec.plan_path.with_name(f".{spec.plan_filename}.partial")
    log = spec.plan_path.with_name(spec.plan_filename + ".build.log")
    cmd = trtexec_command(spec, exe, plan=tmp)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise EngineError(f"trtexec failed with exit code {proc.returncode} (log {log}):\n{tail}")
    version = parse_trtexec_version(proc.stdout + proc.stderr)
    if version is None:
        tmp.unlink(missing_ok=True)
        raise EngineError(f"cannot tell which TensorRT trtexec used (no version in {log})")
    try:
        check_tensorrt_version(version, expect_tensorrt, where=f"trtexec ({exe})")
    except EngineError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(spec.plan_path)
    return _record(spec, local, version, "trtexec", seconds)


def build_or_reuse(
    spec: EngineBuildSpec,
    gpu: GpuType,
    *,
    method: Literal["tensorrt", "trtexec"] = "tensorrt",
    trtexec: str = "trtexec",
    allow_same_cc: bool = False,
    device_index: int = 0,
    expect_tensorrt: str | None = None,
    reuse: bool = True,
) -> tuple[EngineSidecar, bool]:
    """Check the local GPU against ``gpu``, then build ``spec`` with the chosen builder; with
    ``reuse`` an identical existing plan (same ONNX, GPU, TensorRT, profile) is kept instead.

    Returns:
        (sidecar, reused): the plan's sidecar and whether it was already there.
    """
    if not Path(spec.onnx).is_file():
        raise EngineError(f"{spec.onnx}: ONNX file not found")
    local = detect_local_gpu(device_index)
    check_gpu_matches(gpu, local, allow_same_cc=allow_same_cc)
    if reuse:
        found = reusable_plan(
            spec, compute_capability=local.compute_capability, tensorrt_version=expect_tensorrt
        )
        if found is not None:
            return found, True
    if method == "trtexec":
        return build_with_trtexec(spec, local, trtexec, expect_tensorrt=expect_tensorrt), False
    return build_with_tensorrt(spec, local, expect_tensorrt=expect_tensorrt), False
