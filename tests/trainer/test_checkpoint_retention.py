"""Checkpoint retention: the newest K and the best stay, TAO's names, resume finds the newest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rtdetr_spec import TrainConfig
from rtdetr_trainer.engine.checkpoint import (
    LATEST_NAME,
    best_epoch,
    find_resume_checkpoint,
    prune_checkpoints,
    retain,
    save_checkpoint,
)


def _history(values: dict[int, float], key: str = "val_mAP") -> list[dict]:
    return [{"epoch": e, key: v, "train_loss": 1.0} for e, v in values.items()]


def test_best_epoch_by_metric_and_mode() -> None:
    hist = _history({0: 0.1, 1: 0.5, 2: 0.5, 3: 0.2})
    assert best_epoch(hist) == 1  # max for mAP; the first of equals
    assert best_epoch(_history({0: 0.9, 1: 0.3, 2: 0.4}, "val_loss"), "val_loss") == 1
    assert best_epoch(hist, "val_mAP", "min") == 0
    assert best_epoch([{"epoch": 0, "train_loss": 1.0}]) is None  # never validated
    assert best_epoch(hist, "val_mAP50") is None


def _save_epochs(folder: Path, epochs: range) -> None:
    for e in epochs:
        save_checkpoint({"state_dict": {"w": torch.full((2,), float(e))}, "epoch": e}, folder)


def test_prune_keeps_the_newest_k_the_best_and_the_latest_target(tmp_path: Path) -> None:
    _save_epochs(tmp_path, range(7))
    removed = prune_checkpoints(tmp_path, 3, {1})
    assert sorted(p.name for p in removed) == [f"model_epoch_00{e}.pth" for e in (0, 2, 3)]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "model_epoch_001.pth", "model_epoch_004.pth", "model_epoch_005.pth",
        "model_epoch_006.pth", LATEST_NAME,
    ]  # fmt: skip
    found = find_resume_checkpoint(tmp_path)
    assert found is not None and found[1]["epoch"] == 6


@pytest.mark.parametrize("keep", [0, -1])
def test_zero_or_minus_one_keeps_everything(tmp_path: Path, keep: int) -> None:
    _save_epochs(tmp_path, range(5))
    assert retain(tmp_path, keep, _history({0: 0.1}), None, None) == []
    assert len(list(tmp_path.glob("model_epoch_*.pth"))) == 5


def test_retain_uses_the_history_and_touches_only_epoch_files(tmp_path: Path) -> None:
    _save_epochs(tmp_path, range(5))
    (tmp_path / "model_best_002.pth").write_bytes(b"someone else's")
    (tmp_path / "model_epoch_final.pth").write_bytes(b"not ours either")
    removed = retain(tmp_path, 1, _history({0: 0.3, 1: 0.2, 2: 0.6, 3: 0.1, 4: 0.0}), None, None)
    assert sorted(p.name for p in removed) == ["model_epoch_000.pth", "model_epoch_001.pth",
                                               "model_epoch_003.pth"]  # fmt: skip
    assert (tmp_path / "model_epoch_002.pth").exists() and (
        tmp_path / "model_best_002.pth"
    ).exists()
    assert (tmp_path / "model_epoch_final.pth").exists()


def test_the_spec_default_keeps_three_and_refuses_below_minus_one() -> None:
    assert TrainConfig().keep_last_checkpoints == 3
    with pytest.raises(ValueError, match="keep_last_checkpoints"):
        TrainConfig(keep_last_checkpoints=-2)
