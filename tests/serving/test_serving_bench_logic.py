"""The load generator's schedule and verdict (the live runs are in test_triton_serving.py)."""

from __future__ import annotations

import itertools

import pytest

from rtdetr_serving.bench import Frame, Outcome, schedule, summarize
from rtdetr_serving.errors import PlanningError


def test_open_loop_schedule() -> None:
    frames = schedule(streams=4, fps=10, duration_s=2)
    assert len(frames) == 4 * 20
    assert [f.due for f in frames] == sorted(f.due for f in frames)
    s1 = [f for f in frames if f.stream == 1]
    assert [f.index for f in s1] == list(range(20))
    assert s1[0].due == pytest.approx(0.1 / 4)  # phases spread over one frame period
    assert all(b.due - a.due == pytest.approx(0.1) for a, b in itertools.pairwise(s1))
    assert {round(f.due, 6) for f in frames if f.index == 0} == {0.0, 0.025, 0.05, 0.075}
    with pytest.raises(PlanningError):
        schedule(0, 10, 1)
    with pytest.raises(PlanningError):
        schedule(1, 0, 1)


def test_summary_counts_late_dropped_and_errors() -> None:
    frames = schedule(streams=2, fps=10, duration_s=1)  # 20 frames, deadline 100 ms
    outcomes = [Outcome(f, "ok", latency_s=0.010 + 0.001 * i) for i, f in enumerate(frames[:17])]
    outcomes.append(Outcome(frames[17], "ok", latency_s=0.25))  # late
    outcomes.append(Outcome(frames[18], "dropped"))
    outcomes.append(Outcome(frames[19], "error", error="boom"))
    r = summarize(outcomes, 2, 10, 1.0)
    assert (r.scheduled, r.completed, r.late, r.dropped, r.errors) == (20, 18, 1, 1, 1)
    assert r.on_time == 17 and r.deadline_ms == 100.0
    assert r.throughput_fps == 18.0 and sum(r.per_stream_fps) == 18.0
    assert r.latency_ms.p50 == pytest.approx(18.0) and r.latency_ms.max == pytest.approx(250.0)
    assert r.latency_ms.p99 == pytest.approx(250.0)
    assert not r.holds and r.first_error == "boom"
    assert any("failed" in x for x in r.reasons) and any("dropped" in x for x in r.reasons)


def test_verdict_tolerance() -> None:
    frames = schedule(streams=1, fps=100, duration_s=1)
    fine = [Outcome(f, "ok", latency_s=0.001) for f in frames]
    assert summarize(fine, 1, 100, 1.0).holds
    one_late = [*fine[:-1], Outcome(frames[-1], "ok", latency_s=0.5)]
    assert summarize(one_late, 1, 100, 1.0, tolerance=0.01).holds  # 1 of 100 is allowed
    two_late = [*fine[:-2], *(Outcome(f, "ok", latency_s=0.5) for f in frames[-2:])]
    assert not summarize(two_late, 1, 100, 1.0, tolerance=0.01).holds
    assert summarize(two_late, 1, 100, 1.0, deadline_s=1.0).holds
    assert not summarize([], 1, 100, 1.0).holds
    assert Frame(0, 0, 0.0).due == 0.0
