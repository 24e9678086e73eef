"""Capacity planning: how many GPUs (Triton replicas, one GPU each) serve N camera streams at F FPS.

Pure functions, no I/O: the CLI (``rtdetr-serve plan``) and the operator (RTDETRDeployment turns
a stream count and FPS into replicas per GPU pool) call the same code.

Formula (the model card's): a GPU's throughput T in images/s is ``batch * 1000 / latency_ms``;
one GPU serves ``floor(T / F)`` streams at F FPS; N streams need ``ceil(N / floor(T / F))`` GPUs.

Capacity at an FPS the table does not list: each table entry is ``floor(T / fps)``, so it only
bounds T from below: ``T >= 30 * streams@30`` and ``T >= 15 * streams@15``. We take the larger of
these lower bounds (and of a measured ``throughput_ips``) and use ``floor(T_lb / F)``; at exactly
30 or 15 FPS the table value itself is used. This never promises more than the table supports.

A target is impossible when one GPU cannot sustain even one stream (``T < F``: a stream's frames
are not split across replicas, which would reorder them), when F or N are not positive, or when
the pools' replica limits are too small for N streams.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtdetr_serving.catalog import GpuCatalog, GpuType
from rtdetr_serving.errors import PlanningError

#: Guards floor() against float noise such as 2295 / 15 = 152.99999999999997.
_EPS = 1e-9


class Measurement(BaseModel):
    """A measured engine: ``batch`` images per request in ``latency_ms`` (one GPU)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(gt=0)
    batch: int = Field(ge=1)

    @property
    def throughput_ips(self) -> float:
        return self.batch * 1000.0 / self.latency_ms


class Capacity(BaseModel):
    """What one GPU (one replica) sustains at ``fps``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str
    fps: float
    streams_per_gpu: int
    #: Images/s the figure rests on (a lower bound for table-derived capacities).
    throughput_ips: float
    source: Literal["table", "derived", "estimate", "measured"]


class CapacityPlan(BaseModel):
    """GPUs (replicas) for ``streams`` at ``fps`` on one GPU type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str
    fps: float
    streams: int
    streams_per_replica: int
    replicas: int
    #: Streams the replicas can take in total (>= streams).
    capacity_streams: int
    images_per_second_per_replica: float
    #: streams / capacity_streams (0 when no streams are asked for).
    utilisation: float
    headroom: float
    source: Literal["table", "derived", "estimate", "measured"]


def _check_fps(fps: float) -> None:
    if not math.isfinite(fps) or fps <= 0:
        raise PlanningError(f"fps must be a positive number, got {fps}")


def streams_at(throughput_ips: float, fps: float) -> int:
    """Streams one GPU serves at ``fps``: floor(throughput / fps) (the model card's rule)."""
    _check_fps(fps)
    if throughput_ips <= 0:
        raise PlanningError(f"throughput must be positive, got {throughput_ips} images/s")
    return math.floor(throughput_ips / fps + _EPS)


def capacity(gpu: GpuType, fps: float, measurement: Measurement | None = None) -> Capacity:
    """Streams per GPU at ``fps`` from a measurement, the table, or derived from the table."""
    _check_fps(fps)
    if measurement is not None:
        t = measurement.throughput_ips
        return Capacity(
            gpu=gpu.name,
            fps=fps,
            streams_per_gpu=streams_at(t, fps),
            throughput_ips=t,
            source="measured",
        )
    table = {30.0: gpu.streams.fps30, 15.0: gpu.streams.fps15}.get(float(fps))
    if table is not None:
        return Capacity(
            gpu=gpu.name,
            fps=fps,
            streams_per_gpu=table,
            throughput_ips=table * float(fps),
            source="estimate" if gpu.estimate is not None else "table",
        )
    t = gpu.throughput_lower_bound()
    return Capacity(
        gpu=gpu.name,
        fps=fps,
        streams_per_gpu=streams_at(t, fps),
        throughput_ips=t,
        source="estimate" if gpu.estimate is not None else "derived",
    )


def plan_replicas(
    gpu: GpuType,
    fps: float,
    streams: int,
    *,
    measurement: Measurement | None = None,
    headroom: float = 0.0,
) -> CapacityPlan:
    """Replicas of one GPU type for ``streams`` cameras at ``fps``.

    ``headroom`` (0 <= h < 1) keeps that fraction of each replica free:
    streams per replica = floor(capacity * (1 - h)). The model card's numbers use h = 0.
    """
    if streams < 0:
        raise PlanningError(f"streams must be >= 0, got {streams}")
    if not 0.0 <= headroom < 1.0:
        raise PlanningError(f"headroom must be in [0, 1), got {headroom}")
    cap = capacity(gpu, fps, measurement)
    per_replica = math.floor(cap.streams_per_gpu * (1.0 - headroom) + _EPS)
    if per_replica < 1:
        raise PlanningError(
            f"{gpu.name} cannot sustain one stream at {fps:g} FPS "
            f"({cap.throughput_ips:.0f} images/s per GPU, {cap.source}"
            f"{f', headroom {headroom:g}' if headroom else ''}); lower the FPS or pick a faster GPU"
        )
    replicas = math.ceil(streams / per_replica) if streams else 0
    total = replicas * per_replica
    return CapacityPlan(
        gpu=gpu.name,
        fps=fps,
        streams=streams,
        streams_per_replica=per_replica,
        replicas=replicas,
        capacity_streams=total,
        images_per_second_per_replica=per_replica * float(fps),
        utilisation=(streams / total) if total else 0.0,
        headroom=headroom,
        source=cap.source,
    )


def plan_all(
    catalog: GpuCatalog, fps: float, streams: int, *, headroom: float = 0.0
) -> list[CapacityPlan | PlanningError]:
    """One plan per catalog GPU (a PlanningError in place of impossible ones), in catalog order."""
    out: list[CapacityPlan | PlanningError] = []
    for g in catalog.gpus:
        try:
            out.append(plan_replicas(g, fps, streams, headroom=headroom))
        except PlanningError as e:
            out.append(e)
    return out
