"""The perf_analyzer command lines that measure what ``rtdetr-serve bench`` measures.

Triton's ``perf_analyzer`` (NGC's ``tritonserver:<release>-py3-sdk`` image) needs the model's
input name and its shape without the batch axis, which only the served model knows; ``bench
--perf-analyzer`` reads them from the server (the same contract check as every request) and
prints two commands for the same endpoint: a closed-loop concurrency sweep (saturation
throughput) and an open-loop constant request rate of ``streams x fps`` (the camera load
without per-stream clocks or dropped frames; docs/serving.md says how the two differ). Pure.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class PerfAnalyzerLoad:
    """What bench was asked to measure, and where."""

    url: str
    protocol: str
    model: str
    input_name: str
    #: Input shape without the batch axis, e.g. (3, 640, 640).
    input_dims: tuple[int, ...]
    streams: int
    fps: float
    duration_s: float


def perf_analyzer_commands(load: PerfAnalyzerLoad) -> list[list[str]]:
    """``[closed-loop sweep, open-loop constant rate]`` as argv lists (batch 1, like a camera).

    The sweep goes up to twice the streams (at least 4) in steps of a quarter of that; the
    measurement window is the bench duration (perf_analyzer wants milliseconds).
    """
    common = ["perf_analyzer", "-m", load.model, "-u", load.url, "-i", load.protocol]
    common += ["--shape", f"{load.input_name}:{','.join(str(d) for d in load.input_dims)}"]
    common += ["-b", "1", "--percentile", "99"]
    common += ["--measurement-interval", str(max(1000, round(load.duration_s * 1000)))]
    top = max(4, 2 * load.streams)
    step = max(1, top // 4)
    sweep = [*common, "--concurrency-range", f"1:{top}:{step}"]
    rate = load.streams * load.fps
    constant = [*common, "--request-rate-range", f"{rate:g}", "--request-distribution", "constant"]
    return [sweep, constant]


def render(load: PerfAnalyzerLoad) -> str:
    """The two commands as shell lines, each after a comment saying what it measures."""
    sweep, constant = perf_analyzer_commands(load)
    return (
        "# closed loop: throughput and latency as concurrency grows (saturation)\n"
        f"{shlex.join(sweep)}\n"
        f"# open loop: {load.streams} streams x {load.fps:g} FPS as one constant request rate\n"
        f"{shlex.join(constant)}\n"
    )
