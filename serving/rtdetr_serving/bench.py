"""Load generator: N camera streams at F FPS each against a served RT-DETR, open loop.

Open loop means frames are issued on the cameras' clock, not when the previous answer arrives:
stream ``s`` emits frame ``k`` at ``offset_s + k / F`` (offsets spread the streams' phases over one
frame period, as unsynchronised cameras are). Latency is measured from that due time, so time a
frame spends waiting for a free connection counts (no coordinated omission).

A frame still waiting when its stream's next frame is due is dropped, as a live pipeline drops
stale frames; a frame answered later than the deadline (default one frame period) is late. The
target holds when no request failed and at most ``tolerance`` of the scheduled frames were
dropped or late. Each request carries one frame: batching across streams is the server's job
(Triton's dynamic batcher), as in production.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from rtdetr_serving.client import RTDETRClient
from rtdetr_serving.errors import PlanningError, ServingError
from rtdetr_serving.preprocess import load_rgb, preprocess_batch

Status = Literal["ok", "error", "dropped"]


@dataclass(frozen=True)
class Frame:
    stream: int
    index: int
    #: Seconds after the run's start at which the camera produces this frame.
    due: float


def schedule(streams: int, fps: float, duration_s: float) -> list[Frame]:
    """Every frame of every stream in ``duration_s``, in due order."""
    if streams < 1 or fps <= 0 or duration_s <= 0:
        raise PlanningError(
            "bench needs streams >= 1, fps > 0 and duration > 0 "
            f"(got {streams}, {fps}, {duration_s})"
        )
    period = 1.0 / fps
    per_stream = max(1, math.floor(duration_s * fps + 1e-9))
    frames = [
        Frame(stream=s, index=k, due=s * period / streams + k * period)
        for s in range(streams)
        for k in range(per_stream)
    ]
    return sorted(frames, key=lambda f: (f.due, f.stream))


@dataclass(frozen=True)
class Outcome:
    frame: Frame
    status: Status
    #: Seconds from due time to the answer (None unless ok).
    latency_s: float | None = None
    error: str | None = None


class LatencyMs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    mean: float | None


class BenchReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    streams: int
    fps: float
    duration_s: float
    deadline_ms: float
    tolerance: float
    scheduled: int
    completed: int
    on_time: int
    late: int
    dropped: int
    errors: int
    #: Answers per second over the scheduled window, all streams together.
    throughput_fps: float
    #: Answered frames per second of each stream.
    per_stream_fps: list[float]
    latency_ms: LatencyMs
    holds: bool
    reasons: list[str]
    first_error: str | None = None


def _pct(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    rank = max(0, math.ceil(q / 100.0 * len(sorted_ms)) - 1)
    return round(sorted_ms[rank], 3)


def summarize(
    outcomes: list[Outcome],
    streams: int,
    fps: float,
    duration_s: float,
    *,
    deadline_s: float | None = None,
    tolerance: float = 0.01,
) -> BenchReport:
    """Counts, per-stream rates, latency percentiles and the verdict (pure, unit-tested)."""
    deadline = deadline_s if deadline_s is not None else 1.0 / fps
    ok = [o for o in outcomes if o.status == "ok"]
    lat = sorted(o.latency_s * 1000.0 for o in ok if o.latency_s is not None)
    late = sum(1 for o in ok if (o.latency_s or 0.0) > deadline)
    dropped = sum(1 for o in outcomes if o.status == "dropped")
    errors = [o for o in outcomes if o.status == "error"]
    window = max(duration_s, 1e-9)
    per_stream = [0] * streams
    for o in ok:
        per_stream[o.frame.stream] += 1
    reasons = []
    if errors:
        reasons.append(f"{len(errors)} requests failed")
    bad = dropped + late
    if outcomes and bad / len(outcomes) > tolerance:
        reasons.append(
            f"{dropped} dropped + {late} late of {len(outcomes)} frames exceeds "
            f"{tolerance:.1%} (deadline {deadline * 1000:.1f} ms)"
        )
    return BenchReport(
        streams=streams,
        fps=fps,
        duration_s=duration_s,
        deadline_ms=deadline * 1000.0,
        tolerance=tolerance,
        scheduled=len(outcomes),
        completed=len(ok),
        on_time=len(ok) - late,
        late=late,
        dropped=dropped,
        errors=len(errors),
        throughput_fps=round(len(ok) / window, 3),
        per_stream_fps=[round(n / window, 3) for n in per_stream],
        latency_ms=LatencyMs(
            p50=_pct(lat, 50),
            p90=_pct(lat, 90),
            p99=_pct(lat, 99),
            max=round(lat[-1], 3) if lat else None,
            mean=round(statistics.fmean(lat), 3) if lat else None,
        ),
        holds=not reasons and bool(outcomes),
        reasons=reasons,
        first_error=errors[0].error if errors else None,
    )


def run_bench(
    client: RTDETRClient,
    *,
    streams: int,
    fps: float,
    duration_s: float,
    image: str | Path | None = None,
    deadline_ms: float | None = None,
    tolerance: float = 0.01,
    max_in_flight: int | None = None,
) -> BenchReport:
    """Drive ``client`` with the open-loop schedule and summarise what came back."""
    frames = schedule(streams, fps, duration_s)
    contract = client.contract
    if image is not None:
        pic = load_rgb(image)
    else:  # a mid-grey frame: the server's cost does not depend on the pixels
        pic = load_rgb(np.full((contract.height, contract.width, 3), 128, np.uint8))
    batch, _ = preprocess_batch([pic], contract.height, contract.width)
    client.infer_batch(batch)  # warm the connection and the model, not counted
    period = 1.0 / fps
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    workers = max_in_flight or min(64, max(4, 2 * streams))

    def send(f: Frame, t0: float) -> None:
        if time.monotonic() - t0 > f.due + period:
            out = Outcome(f, "dropped")
        else:
            try:
                client.infer_batch(batch)
                out = Outcome(f, "ok", latency_s=time.monotonic() - t0 - f.due)
            except ServingError as e:
                out = Outcome(f, "error", error=str(e))
        with lock:
            outcomes.append(out)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camera") as pool:
        t0 = time.monotonic()
        for f in frames:
            wait = t0 + f.due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pool.submit(send, f, t0)
    return summarize(
        outcomes,
        streams,
        fps,
        duration_s,
        deadline_s=deadline_ms / 1000.0 if deadline_ms is not None else None,
        tolerance=tolerance,
    )
