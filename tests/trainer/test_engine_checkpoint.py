"""Checkpoint files: atomic writes, the latest pointer, and never resuming from a damaged file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rtdetr_trainer.engine.checkpoint import (
    LATEST_NAME,
    find_resume_checkpoint,
    read_training_checkpoint,
    remove_stale_temp_files,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from rtdetr_trainer.errors import CheckpointError


def _ckpt(epoch: int) -> dict:
    return {
        "state_dict": {"model.model.w": torch.full((3,), float(epoch))},
        "tao_model": "rtdetr",
        "epoch": epoch,
        "global_step": 10 * (epoch + 1),
        "rng_state": rng_state(),
    }


def test_save_points_latest_and_loads_weights_only(tmp_path: Path) -> None:
    first = save_checkpoint(_ckpt(0), tmp_path)
    second = save_checkpoint(_ckpt(1), tmp_path)
    latest = tmp_path / LATEST_NAME
    assert latest.is_symlink() and str(latest.readlink()) == second.name == "model_epoch_001.pth"
    assert first.exists()  # every checkpoint is kept, as TAO does
    umask = os.umask(0o022)
    os.umask(umask)
    assert second.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by other pods' users
    loaded = read_training_checkpoint(latest)  # weights_only=True under the hood
    assert loaded["epoch"] == 1 and loaded["state_dict"]["model.model.w"].tolist() == [1.0] * 3
    restore_rng_state(loaded["rng_state"])  # survives the weights-only round trip
    assert not list(tmp_path.glob(".*"))  # no temp files left


def test_failed_write_leaves_previous_state_intact(tmp_path: Path) -> None:
    save_checkpoint(_ckpt(0), tmp_path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    bad = {**_ckpt(1), "boom": Unpicklable()}
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(bad, tmp_path)
    assert not (tmp_path / "model_epoch_001.pth").exists()
    assert str((tmp_path / LATEST_NAME).readlink()) == "model_epoch_000.pth"
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_skips_truncated_and_garbage_files(tmp_path: Path) -> None:
    save_checkpoint(_ckpt(0), tmp_path)
    good = save_checkpoint(_ckpt(1), tmp_path)
    data = good.read_bytes()
    (tmp_path / "model_epoch_002.pth").write_bytes(data[: len(data) // 2])  # partial copy
    (tmp_path / "model_epoch_003.pth").write_bytes(b"\x00" * 100)  # garbage
    (tmp_path / ".model_epoch_004.pth.abc.tmp").write_bytes(data)  # a killed writer's temp file
    path, ckpt = find_resume_checkpoint(tmp_path)
    assert path == good.resolve() and ckpt["epoch"] == 1
    assert remove_stale_temp_files(tmp_path) == 1


def test_resume_prefers_newest_complete_file_over_stale_pointer(tmp_path: Path) -> None:
    save_checkpoint(_ckpt(0), tmp_path)
    # A crash between the rename of epoch 1 and the pointer swap: the file is complete.
    torch.save(_ckpt(1), tmp_path / "model_epoch_001.pth")
    path, ckpt = find_resume_checkpoint(tmp_path)
    assert path.name == "model_epoch_001.pth" and ckpt["epoch"] == 1


def test_damaged_latest_target_falls_back(tmp_path: Path) -> None:
    save_checkpoint(_ckpt(0), tmp_path)
    target = save_checkpoint(_ckpt(1), tmp_path)
    target.write_bytes(b"PK\x03\x04 broken zip")
    path, ckpt = find_resume_checkpoint(tmp_path)
    assert path.name == "model_epoch_000.pth" and ckpt["epoch"] == 0


def test_nothing_to_resume(tmp_path: Path) -> None:
    assert find_resume_checkpoint(tmp_path) is None
    (tmp_path / LATEST_NAME).symlink_to("model_epoch_009.pth")  # dangling
    assert find_resume_checkpoint(tmp_path) is None


def test_explicit_bad_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    p = tmp_path / "x.pth"
    p.write_text("not torch")
    with pytest.raises(CheckpointError, match=r"x\.pth: not a loadable checkpoint"):
        read_training_checkpoint(p)
    torch.save({"weights": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        read_training_checkpoint(p)


def test_rng_state_round_trip() -> None:
    import random

    import numpy as np

    state = rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == a
