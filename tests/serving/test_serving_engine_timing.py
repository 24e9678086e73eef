"""Engine timing: the pure parts (percentiles, throughput, profile batches, the summary)."""

from __future__ import annotations

import pytest

from rtdetr_serving.engine_spec import OptimizationProfile
from rtdetr_serving.engine_timing import (
    BatchTiming,
    EngineTiming,
    percentile,
    profile_batches,
    summarize,
)
from rtdetr_serving.errors import EngineError
from rtdetr_serving.task_summary import ServingTaskSummary
from rtdetr_spec.reporting import MESSAGE_LIMIT


def test_nearest_rank_percentiles() -> None:
    s = [float(i) for i in range(1, 101)]
    assert (percentile(s, 50), percentile(s, 90), percentile(s, 99)) == (50.0, 90.0, 99.0)
    assert percentile([7.0], 99) == 7.0


def test_summary_throughput_is_the_model_cards_formula() -> None:
    t = summarize(16, [10.0, 10.0, 12.0, 8.0])
    assert t.mean_ms == 10.0 and t.throughput_ips == 1600.0
    assert (t.p50_ms, t.p99_ms) == (10.0, 12.0)
    with pytest.raises(EngineError, match="batch 4"):
        summarize(4, [])


def test_profile_batches_are_min_opt_max_once() -> None:
    p = OptimizationProfile.for_batches("inputs", (3, 640, 640), 1, 16, 32)
    assert profile_batches(p) == [1, 16, 32]
    p = OptimizationProfile.for_batches("inputs", (3, 640, 640), 1, 1, 8)
    assert profile_batches(p) == [1, 8]


def _timing() -> EngineTiming:
    return EngineTiming(
        iterations=100,
        batches=[
            BatchTiming(batch=1, p50_ms=2, p90_ms=2.1, p99_ms=2.5, mean_ms=2, throughput_ips=500),
            BatchTiming(batch=16, p50_ms=8, p90_ms=8.5, p99_ms=9, mean_ms=8, throughput_ips=2000),
            BatchTiming(
                batch=32, p50_ms=17, p90_ms=18, p99_ms=20, mean_ms=17, throughput_ips=1882.35
            ),
        ],
    )


def test_best_batch_and_the_summary_round_trip_within_the_message_limit() -> None:
    timing = _timing()
    assert timing.best.batch == 16 and timing.throughput_ips == 2000
    s = ServingTaskSummary(task="gen_trt_engine", status="SUCCESS", timing=timing)
    text = s.to_message()
    assert len(text.encode()) < MESSAGE_LIMIT // 4
    assert ServingTaskSummary.model_validate_json(text).timing == timing
