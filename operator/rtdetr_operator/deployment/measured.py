"""Measured capacity: what the engine Jobs timed, preferred over the catalog's figure.

An engine Job times its plan with TensorRT's runtime (rtdetr_serving/engine_timing.py) and
reports the best batch size's mean latency; the planner records it in ``status.engines[]``.
From then on a pool's capacity (``streamsPerReplica``, the replicas a stream target needs, the
routes' weights) rests on that measurement: the target revision's when one is being rolled
out, else the served one's. Pure functions over the status dict.
"""

from __future__ import annotations

from typing import Any

from rtdetr_serving.catalog import GpuType
from rtdetr_serving.planner import Measurement, streams_at

#: A measurement further than this from the catalog's figure (either way) is a Warning event.
GAP_RATIO = 0.3


def engine_measurements(status: dict[str, Any]) -> dict[str, Measurement]:
    """GPU type -> its engine's measurement, target revision first, then the served one."""
    order = [(status.get(k) or {}).get("revision") for k in ("target", "model")]
    out: dict[str, Measurement] = {}
    for revision in [r for r in order if r]:
        for e in status.get("engines") or []:
            if e.get("revision") != revision or e.get("state") != "Succeeded":
                continue
            mean, batch = e.get("measuredMeanMs"), e.get("measuredBatch")
            if e["gpu"] not in out and mean and batch:
                out[e["gpu"]] = Measurement(latency_ms=float(mean), batch=int(batch))
    return out


def measured_fields(m: Measurement | None) -> dict[str, int]:
    """``measuredStreams30``/``measuredStreams15`` of a pool's status (empty without one)."""
    if m is None:
        return {}
    t = m.throughput_ips
    return {"measuredStreams30": streams_at(t, 30), "measuredStreams15": streams_at(t, 15)}


def catalog_fields(gpu: GpuType | None) -> dict[str, int]:
    """The catalog's streams at 30/15 FPS, shown beside the measurement."""
    if gpu is None:
        return {}
    t = gpu.throughput_lower_bound()
    return {
        "catalogStreams30": gpu.streams.fps30
        if gpu.streams.fps30 is not None
        else streams_at(t, 30),
        "catalogStreams15": gpu.streams.fps15
        if gpu.streams.fps15 is not None
        else streams_at(t, 15),
    }


def gap_message(gpu: GpuType, measured_ips: float) -> str | None:
    """A sentence when the measurement is far from the catalog (None when close)."""
    catalog = gpu.throughput_lower_bound()
    if catalog <= 0 or abs(measured_ips - catalog) / catalog <= GAP_RATIO:
        return None
    kind = "estimate" if gpu.estimate is not None else "figure"
    return (
        f"measured {measured_ips:.0f} images/s on {gpu.name}, the catalog's {kind} is "
        f"{catalog:.0f} ({(measured_ips - catalog) / catalog:+.0%}); the pool is sized by the "
        "measurement"
    )
