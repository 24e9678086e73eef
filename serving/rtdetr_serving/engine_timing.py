"""Time a built TensorRT plan on its own GPU with TensorRT's runtime: measured capacity.

The model card's table is a figure for one GPU, one TensorRT and one export; what a cluster
serves is the plan the engine Job just built. After building (or reusing) it, the Job times the
plan at the batch sizes of its optimization profile (min, opt, max): ``warmup`` untimed runs,
then ``iterations`` runs of ``execute_async_v3`` on one CUDA stream, each bracketed by CUDA
events, input ``[B, 3, H, W]`` and outputs on the device (no host copies: Triton's
preprocessing and transfers are not the engine's). Latency percentiles and throughput
``B * 1000 / mean latency_ms`` per batch size (the model card's own formula) go into the Job's
task summary; the operator turns the best throughput into streams at 30 and 15 FPS.

The GPU part (:func:`time_plan`) needs TensorRT and a CUDA driver; everything else is pure and
unit-tested. CUDA is driven through the driver API (``libcuda.so.1``, always present where the
plan was built) on the device's primary context, the one TensorRT's runtime uses.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rtdetr_serving.engine_spec import OptimizationProfile
from rtdetr_serving.errors import EngineError, EngineToolMissingError

WARMUP = 20
ITERATIONS = 100


class BatchTiming(BaseModel):
    """Latency of one ``execute_async_v3`` at one batch size (milliseconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: int = Field(ge=1)
    p50_ms: float = Field(gt=0)
    p90_ms: float = Field(gt=0)
    p99_ms: float = Field(gt=0)
    mean_ms: float = Field(gt=0)
    #: Images/s on one stream: batch * 1000 / mean_ms.
    throughput_ips: float = Field(gt=0)


class EngineTiming(BaseModel):
    """A plan timed with TensorRT's runtime, per batch size of its profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iterations: int = Field(ge=1)
    batches: list[BatchTiming] = Field(min_length=1)

    @property
    def best(self) -> BatchTiming:
        """The batch size with the highest throughput (what a saturated Triton reaches)."""
        return max(self.batches, key=lambda b: b.throughput_ips)

    @property
    def throughput_ips(self) -> float:
        return self.best.throughput_ips


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of ascending ``sorted_ms``."""
    if not sorted_ms:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_ms)))
    return float(sorted_ms[rank - 1])


def summarize(batch: int, latencies_ms: Sequence[float]) -> BatchTiming:
    """Percentiles, mean and throughput of one batch size's timed runs."""
    if not latencies_ms or min(latencies_ms) <= 0:
        raise EngineError(f"batch {batch}: no positive latency measured")
    s = sorted(latencies_ms)
    mean = sum(s) / len(s)
    return BatchTiming(
        batch=batch,
        p50_ms=round(percentile(s, 50), 4),
        p90_ms=round(percentile(s, 90), 4),
        p99_ms=round(percentile(s, 99), 4),
        mean_ms=round(mean, 4),
        throughput_ips=round(batch * 1000.0 / mean, 2),
    )


def profile_batches(profile: OptimizationProfile) -> list[int]:
    """Batch sizes to time: the profile's min, opt and max (distinct, ascending)."""
    return sorted({profile.min_shape[0], profile.opt_shape[0], profile.max_shape[0]})


class _Cuda:
    """The few CUDA driver calls timing needs, on the device's primary context."""

    def __init__(self, device_index: int) -> None:
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError:
            raise EngineToolMissingError(
                "no CUDA driver (libcuda.so.1): timing needs the GPU"
            ) from None
        self.lib.cuEventElapsedTime.argtypes = [
            ctypes.POINTER(ctypes.c_float),
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self("cuInit", 0)
        dev = ctypes.c_int()
        self("cuDeviceGet", ctypes.byref(dev), device_index)
        self.ctx = ctypes.c_void_p()
        self("cuDevicePrimaryCtxRetain", ctypes.byref(self.ctx), dev)
        self("cuCtxSetCurrent", self.ctx)
        self.stream = ctypes.c_void_p()
        self("cuStreamCreate", ctypes.byref(self.stream), 0)

    def __call__(self, fn: str, *args: object) -> None:
        res = getattr(self.lib, fn)(*args)
        if res != 0:
            raise EngineError(f"CUDA driver call {fn} failed with CUresult {res}")

    def alloc(self, nbytes: int) -> int:
        ptr = ctypes.c_uint64()
        self("cuMemAlloc_v2", ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1)))
        return int(ptr.value)

    def event(self) -> ctypes.c_void_p:
        ev = ctypes.c_void_p()
        self("cuEventCreate", ctypes.byref(ev), 0)
        return ev

    def elapsed_ms(self, start: ctypes.c_void_p, end: ctypes.c_void_p) -> float:
        self("cuEventSynchronize", end)
        ms = ctypes.c_float()
        self("cuEventElapsedTime", ctypes.byref(ms), start, end)
        return float(ms.value)


def time_plan(
    plan: Path,
    profile: OptimizationProfile,
    *,
    device_index: int = 0,
    warmup: int = WARMUP,
    iterations: int = ITERATIONS,
) -> EngineTiming:
    """Time ``plan`` at each batch size of ``profile`` on CUDA device ``device_index`` (GPU)."""
    try:
        import numpy as np
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise EngineToolMissingError(
            "timing needs the 'tensorrt' Python package (NVIDIA's TensorRT or Triton image)"
        ) from None
    cuda = _Cuda(device_index)
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan.read_bytes())
    if engine is None:
        raise EngineError(f"{plan}: TensorRT cannot deserialize this plan here")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    # Device buffers sized once at the profile's max batch serve every smaller batch.
    context.set_input_shape(profile.input_name, profile.max_shape)
    buffers: dict[str, int] = {}
    for name in names:
        shape = tuple(context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise EngineError(f"{plan}: tensor {name} has an unresolved shape {shape}")
        itemsize = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).itemsize
        buffers[name] = cuda.alloc(int(np.prod(shape)) * itemsize)
    results = []
    for batch in profile_batches(profile):
        context.set_input_shape(profile.input_name, (batch, *profile.max_shape[1:]))
        for name in names:
            context.set_tensor_address(name, buffers[name])
        start, end = cuda.event(), cuda.event()
        samples = []
        for i in range(warmup + iterations):
            cuda("cuEventRecord", start, cuda.stream)
            if not context.execute_async_v3(cuda.stream.value or 0):
                raise EngineError(f"{plan}: execute_async_v3 failed at batch {batch}")
            cuda("cuEventRecord", end, cuda.stream)
            ms = cuda.elapsed_ms(start, end)
            if i >= warmup:
                samples.append(ms)
        results.append(summarize(batch, samples))
    for ptr in buffers.values():
        cuda("cuMemFree_v2", ctypes.c_uint64(ptr))
    return EngineTiming(iterations=iterations, batches=results)
