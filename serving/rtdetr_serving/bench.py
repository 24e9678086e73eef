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
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from rtdetr_serving.catalog import GpuCatalog
from rtdetr_serving.client import RTDETRClient
from rtdetr_serving.errors import LoadTooLargeError, PlanningError, ServingError
from rtdetr_serving.preprocess import load_rgb, preprocess_batch

Status = Literal["ok", "error", "dropped"]


@dataclass(frozen=True)
class Frame:
    stream: int
    index: int
    #: Seconds after the run's start at which the camera produces this frame.
    due: float


def _check(streams: int, fps: float, duration_s: float) -> None:
    ok = math.isfinite(fps) and fps > 0 and math.isfinite(duration_s) and duration_s > 0
    if streams < 1 or not ok:
        raise PlanningError(
            "bench needs streams >= 1, fps > 0 and duration > 0 "
            f"(got {streams}, {fps}, {duration_s})"
        )


def frame_count(streams: int, fps: float, duration_s: float) -> int:
    """Frames the schedule holds: every stream's ``floor(duration * fps)`` (at least one)."""
    _check(streams, fps, duration_s)
    return streams * max(1, math.floor(duration_s * fps + 1e-9))


def iter_schedule(streams: int, fps: float, duration_s: float) -> Iterator[Frame]:
    """Every frame of every stream in ``duration_s``, in due order, made as it is needed.

    A stream's phase offset is under one period, so frame k of every stream is due before
    frame k + 1 of any: round-major, stream-minor order is due order without sorting.
    """
    _check(streams, fps, duration_s)
    period = 1.0 / fps
    for k in range(frame_count(streams, fps, duration_s) // streams):
        for s in range(streams):
            yield Frame(stream=s, index=k, due=s * period / streams + k * period)


def schedule(streams: int, fps: float, duration_s: float) -> list[Frame]:
    """Every frame of every stream in ``duration_s``, in due order."""
    return list(iter_schedule(streams, fps, duration_s))


#: Offered load, as a multiple of the fastest catalog GPU's images/s, beyond which ``bench`` is
#: refused: one Triton endpoint cannot answer it, so the run could only measure the client.
LOAD_FACTOR = 10.0
#: Frames one run may schedule: every outcome is kept for the percentiles (~200 bytes each).
MAX_FRAMES = 5_000_000


def check_load(streams: int, fps: float, duration_s: float, catalog: GpuCatalog) -> None:
    """Refuse a load no served model could take before connecting, naming the bound."""
    rate = streams * fps
    fastest = max(catalog.gpus, key=lambda g: g.throughput_lower_bound(), default=None)
    if fastest is not None:
        bound = LOAD_FACTOR * fastest.throughput_lower_bound()
        if rate > bound:
            raise LoadTooLargeError(
                f"--streams {streams} x --fps {fps:g} = {rate:g} frames/s is over {bound:g}, "
                f"{LOAD_FACTOR:g}x what the fastest catalog GPU ({fastest.name}) answers; "
                "bench one endpoint with a load it could serve"
            )
    frames = frame_count(streams, fps, duration_s)
    if frames > MAX_FRAMES:
        raise LoadTooLargeError(
            f"--streams {streams} x --fps {fps:g} x --duration {duration_s:g} = {frames} frames "
            f"is over {MAX_FRAMES}; shorten --duration"
        )


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


class _Progress:
    """A line on stderr every ``every_s`` seconds while a run goes on, so it never looks hung."""

    def __init__(
        self, total: int, duration_s: float, counts: Callable[[], str], every_s: float
    ) -> None:
        self.total, self.duration_s, self.counts, self.every_s = total, duration_s, counts, every_s
        self.done = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="bench-progress", daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.every_s):
            elapsed = time.monotonic() - self.t0
            phase = "sending" if elapsed <= self.duration_s else "waiting for answers"
            print(
                f"bench: {elapsed:.0f}s of {self.duration_s:g}s ({phase}): {self.counts()}",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> _Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


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
    progress_every_s: float = 5.0,
) -> BenchReport:
    """Drive ``client`` with the open-loop schedule and summarise what came back.

    A progress line goes to stderr every ``progress_every_s`` seconds. Once the schedule has
    been sent, frames still queued are dropped at once (they are stale) and each request in
    flight ends within the client's timeout and retries, so a run ends soon after its duration.
    """
    total = frame_count(streams, fps, duration_s)
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
    sent = 0

    def counts() -> str:
        with lock:
            done = list(outcomes)
        by = {k: sum(1 for o in done if o.status == k) for k in ("ok", "dropped", "error")}
        return (
            f"{sent}/{total} frames sent, {by['ok']} answered, {by['dropped']} dropped, "
            f"{by['error']} errors"
        )

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

    with (
        _Progress(total, duration_s, counts, progress_every_s),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camera") as pool,
    ):
        t0 = time.monotonic()
        for f in iter_schedule(streams, fps, duration_s):
            wait = t0 + f.due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pool.submit(send, f, t0)
            sent += 1
    return summarize(
        outcomes,
        streams,
        fps,
        duration_s,
        deadline_s=deadline_ms / 1000.0 if deadline_ms is not None else None,
        tolerance=tolerance,
    )
