"""The perf_analyzer commands ``rtdetr-serve bench --perf-analyzer`` prints (pure part)."""

from __future__ import annotations

import shlex

from rtdetr_serving.perf_analyzer import PerfAnalyzerLoad, perf_analyzer_commands, render

LOAD = PerfAnalyzerLoad(
    url="warehouse-r50-l4.ml.svc:8001",
    protocol="grpc",
    model="rtdetr",
    input_name="inputs",
    input_dims=(3, 544, 960),
    streams=18,
    fps=30.0,
    duration_s=0.25,
)


def test_a_sweep_and_a_constant_rate_of_streams_times_fps() -> None:
    sweep, constant = perf_analyzer_commands(LOAD)
    assert sweep[:7] == ["perf_analyzer", "-m", "rtdetr", "-u", LOAD.url, "-i", "grpc"]
    assert sweep[sweep.index("--shape") + 1] == "inputs:3,544,960"
    assert sweep[sweep.index("-b") + 1] == "1"  # one frame per request, like a camera
    assert sweep[sweep.index("--concurrency-range") + 1] == "1:36:9"
    assert constant[constant.index("--request-rate-range") + 1] == "540"
    assert constant[constant.index("--measurement-interval") + 1] == "1000"  # perf_analyzer's min


def test_rendered_lines_parse_back_to_the_same_argv() -> None:
    lines = [ln for ln in render(LOAD).splitlines() if not ln.startswith("#")]
    assert [shlex.split(ln) for ln in lines] == perf_analyzer_commands(LOAD)
