"""Live progress lines for the operator: rank 0 prints one :mod:`rtdetr_spec.progress` line per
epoch and about one a minute within an epoch (``RTDETR_PROGRESS_EVERY_S``, default 60).

The ETA comes from this process's own pace: seconds spent since it started (training and
validation alike) per optimizer step it has done, times the steps left. A resumed run therefore
says nothing about the ETA until its first step is done rather than counting restored epochs as
instant.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from rtdetr_spec.progress import ProgressReport, Validation, format_line


class LiveProgress:
    """Prints progress lines for one ``fit`` (disabled on every rank but global rank 0)."""

    def __init__(
        self,
        num_epochs: int,
        steps_per_epoch: int,
        start_epoch: int,
        *,
        enabled: bool,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        every_s: float | None = None,
    ) -> None:
        self.num_epochs, self.steps_per_epoch = num_epochs, max(steps_per_epoch, 0)
        self.start_epoch, self.enabled = start_epoch, enabled
        self.stream = stream or sys.stdout
        self.clock = clock
        if every_s is None:
            every_s = float(os.environ.get("RTDETR_PROGRESS_EVERY_S", "60"))
        self.every_s = every_s
        self.t0 = clock()
        self.last_print: float | None = None
        self.validation: Validation | None = None
        self.loss: float | None = None
        self.lr: float | None = None

    def step(self, epoch: int, step: int, global_step: int, values: dict[str, float]) -> None:
        """After optimizer step ``step`` (1-based) of ``epoch`` (0-based); prints if due."""
        self.loss, self.lr = values.get("loss"), values.get("lr", self.lr)
        if not self.enabled:
            return
        now = self.clock()
        if self.last_print is not None and now - self.last_print < self.every_s:
            return
        if step >= self.steps_per_epoch:
            return  # the epoch's own line follows
        self._print(epoch, step, global_step, now)

    def epoch_end(self, epoch: int, global_step: int, record: dict[str, Any]) -> None:
        """After ``epoch`` (0-based) with its metrics record (``val_mAP50`` if validated)."""
        if isinstance(record.get("train_loss"), float):
            self.loss = record["train_loss"]
        if "val_mAP50" in record or "val_mAP" in record:
            per_class = record.get("val_per_class_AP50") or {}
            self.validation = Validation(
                epoch=epoch + 1,
                mAP=record.get("val_mAP"),
                mAP50=record.get("val_mAP50"),
                perClassAP50={str(k): v for k, v in per_class.items()},
            )
        if self.enabled:
            self._print(epoch + 1, 0, global_step, self.clock())

    def report(self, epoch: int, step: int, global_step: int, now: float) -> ProgressReport:
        """What the line for ``epoch`` epochs and ``step`` more steps done says at ``now``."""
        total = self.num_epochs * self.steps_per_epoch
        done = min(epoch * self.steps_per_epoch + step, total)
        done_here = done - self.start_epoch * self.steps_per_epoch
        elapsed = now - self.t0
        eta = (total - done) * elapsed / done_here if done_here > 0 and elapsed > 0 else None
        return ProgressReport(
            epoch=epoch,
            num_epochs=self.num_epochs,
            step=self.steps_per_epoch if step == 0 and epoch > 0 else step,
            steps_per_epoch=self.steps_per_epoch,
            global_step=global_step,
            percent=round(100.0 * done / total, 2) if total else 0.0,
            eta_seconds=round(eta, 1) if eta is not None and math.isfinite(eta) else None,
            loss=self.loss,
            learning_rate=self.lr,
            validation=self.validation,
            time=datetime.now(UTC).replace(microsecond=0),
        )

    def _print(self, epoch: int, step: int, global_step: int, now: float) -> None:
        self.last_print = now
        line = format_line(self.report(epoch, step, global_step, now))
        print(line, file=self.stream, flush=True)
