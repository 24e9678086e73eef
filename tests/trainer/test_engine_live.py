"""Rank 0's progress lines: when they are printed and what they say (read back by the contract)."""

from __future__ import annotations

import io

from rtdetr_spec.progress import parse_log
from rtdetr_trainer.engine.live import LiveProgress


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_lines_per_epoch_and_per_interval_with_eta_and_validation() -> None:
    clock, out = Clock(), io.StringIO()
    live = LiveProgress(4, 10, 0, enabled=True, stream=out, clock=clock, every_s=60)
    for epoch in range(2):
        for step in range(1, 11):
            clock.t += 10  # 10 s per step
            live.step(epoch, step, epoch * 10 + step, {"loss": 20.0 - step, "lr": 1e-4})
        record = {"train_loss": 15.0}
        if epoch == 1:
            record |= {"val_mAP": 0.4, "val_mAP50": 0.7, "val_per_class_AP50": {"person": 0.8}}
        live.epoch_end(epoch, (epoch + 1) * 10, record)
    reports = parse_log(out.getvalue())
    # epoch 0: step 1 (the first), step 7 (60 s later); the epoch's end; epoch 1: step 6
    # (60 s after the epoch's line); the epoch's end.
    assert [(r.epoch, r.step) for r in reports] == [(0, 1), (0, 7), (1, 10), (1, 6), (2, 10)]
    first, mid, end = reports[0], reports[1], reports[-1]
    assert first.percent == 2.5 and first.loss == 19.0 and first.learning_rate == 1e-4
    assert mid.eta_seconds == 330.0  # 33 steps left at 10 s each
    assert end.percent == 50.0 and end.eta_seconds == 200.0 and end.loss == 15.0
    assert reports[2].validation is None
    assert end.validation is not None and end.validation.epoch == 2
    assert end.validation.m_ap50 == 0.7 and end.validation.per_class_ap50 == {"person": 0.8}


def test_resumed_run_has_no_eta_before_its_first_step_and_counts_only_its_own_pace() -> None:
    clock, out = Clock(), io.StringIO()
    live = LiveProgress(10, 5, 6, enabled=True, stream=out, clock=clock, every_s=0)
    live.step(6, 0, 30, {"loss": 1.0})  # nothing done in this process yet
    clock.t += 4
    live.step(6, 2, 32, {"loss": 1.0})
    first, second = parse_log(out.getvalue())
    assert first.eta_seconds is None and first.percent == 60.0
    assert second.eta_seconds == 36.0  # 18 steps left at 2 s each, not 32 steps in 4 s


def test_other_ranks_print_nothing() -> None:
    out = io.StringIO()
    live = LiveProgress(2, 3, 0, enabled=False, stream=out, every_s=0)
    live.step(0, 1, 1, {"loss": 1.0})
    live.epoch_end(0, 3, {"train_loss": 1.0})
    assert out.getvalue() == ""
