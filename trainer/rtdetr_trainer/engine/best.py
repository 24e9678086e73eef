"""``model_best.pth``: the checkpoint of the epoch with the highest validation mAP50 so far.

Written by global rank 0 right after a validation that beats every earlier one (strictly: a tie
keeps the earlier epoch), whatever ``train.checkpoint_interval`` says, so the best weights are
never lost between periodic checkpoints. Same content as a ``model_epoch_NNN.pth`` (TAO's keys,
class map, EMA), written to a temp file, fsync'ed and renamed, so a crash leaves the previous
best intact. Its name does not match the epoch pattern, so ``train.keep_last_checkpoints``
never deletes it and resuming never picks it. The best score so far comes from the run's
history (carried in every checkpoint), so a resumed run only replaces it with something better.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtdetr_trainer.engine import checkpoint as ckpt_io

log = logging.getLogger(__name__)

BEST_NAME = "model_best.pth"
#: The validation metric that chooses ``model_best.pth``.
BEST_METRIC = "val_mAP50"


def _score(record: dict[str, Any]) -> float | None:
    value = record.get(BEST_METRIC)
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


class BestModel:
    """Tracks the best ``val_mAP50`` of a run and keeps its weights as ``model_best.pth``."""

    def __init__(self, folder: str | Path, history: list[dict[str, Any]]) -> None:
        self.path = Path(folder) / BEST_NAME
        self.score: float | None = None
        self.epoch: int | None = None
        for record in history:
            score = _score(record)
            if score is not None and (self.score is None or score > self.score):
                self.score, self.epoch = score, record.get("epoch")

    def offer(
        self, epoch: int, record: dict[str, Any], checkpoint: Callable[[], dict[str, Any]]
    ) -> bool:
        """Save ``checkpoint()`` as the best if ``record`` beats the best so far."""
        score = _score(record)
        if score is None or (self.score is not None and score <= self.score):
            return False
        ckpt_io.atomic_torch_save(checkpoint(), self.path)
        previous = "none" if self.score is None else f"{self.score:.4f} (epoch {self.epoch})"
        self.score, self.epoch = score, epoch
        log.info("saved %s: %s %.4f at epoch %d (was %s)",
                 self.path.name, BEST_METRIC, score, epoch, previous)  # fmt: skip
        return True

    def existing(self) -> Path | None:
        """The file, if a validation of this run (or the one it resumed) wrote it."""
        return self.path if self.score is not None and self.path.is_file() else None
