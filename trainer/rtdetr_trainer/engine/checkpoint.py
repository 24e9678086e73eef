"""Training checkpoints in TAO's Lightning-like layout, written so that a crash never corrupts one.

Layout of ``model_epoch_{epoch:03d}.pth`` (epoch 0-based, the epoch just completed):

* TAO's keys: ``state_dict`` (detector weights, ``model.model.`` prefix), ``tao_model: "rtdetr"``,
  ``epoch``, ``global_step``, ``pytorch-lightning_version``, ``optimizer_states`` (one AdamW state),
  ``lr_schedulers`` (one schedule description). TAO's evaluate/export read such a file.
* ours: ``class_map`` (logit index <-> category id <-> name), ``spec`` (resolved experiment),
  ``ema_state_dict`` (EMA weights, same prefix) and ``ema`` counters when EMA is on, ``sampler``
  (seed, epoch), ``rng_state`` (torch/numpy/python), ``grad_scaler`` (fp16) and ``format``.

Everything is plain tensors/lists/dicts, so files load with ``torch.load(weights_only=True)``.

Writes go to a hidden temp file in the same folder, are fsync'ed and renamed over the final name;
only then is ``rtdetr_model_latest.pth`` (a relative symlink, as TAO's) swapped to it by another
rename. A crash at any point leaves either the old or the new state, never a partial file under a
real name. Resume follows the pointer, and falls back to the newest checkpoint that loads if the
pointer's target is damaged (each fallback is logged).

Retention (``train.keep_last_checkpoints``, default 3; 0 or -1 keep all): after each save, epoch
files beyond the newest K are deleted, except the best one by the validation metric
(``train.checkpointer.monitor``, default ``val_mAP``) and the latest pointer's target. Names stay
TAO's, and resume still finds the newest.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtdetr_spec.artifacts import atomic_write, fsync_dir
from rtdetr_trainer.errors import CheckpointError

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "model_epoch_{epoch:03d}.pth"
CHECKPOINT_RE = re.compile(r"^model_epoch_(\d+)\.pth$")
LATEST_NAME = "rtdetr_model_latest.pth"
FORMAT = "rtdetr-trainer-checkpoint/v1"
#: The Lightning version TAO 6.x records; kept so TAO's loaders accept our files.
LIGHTNING_VERSION = "2.4.0"


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file beside ``path``, fsync, rename over ``path``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def trainer_state(trainer: Any, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """Everything a checkpoint file holds (the layout above) for a ``loop.Trainer``."""
    from rtdetr_trainer.model.weights import to_tao_state_dict

    ckpt: dict[str, Any] = {
        "state_dict": to_tao_state_dict(trainer.raw_model),
        "tao_model": "rtdetr",
        "epoch": epoch,
        "global_step": trainer.state.global_step,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "optimizer_states": [trainer.optimizer.state_dict()],
        "lr_schedulers": [trainer.schedule.state_dict()],
        "format": FORMAT,
        "class_map": trainer.data.class_map.model_dump(),
        "spec": trainer.spec.model_dump(mode="json"),
        "sampler": {"seed": trainer.cfg.seed, "epoch": epoch},
        "rng_state": rng_state(),
        "metrics": metrics,
        "history": trainer.state.history,
    }
    if trainer.ema is not None:
        ckpt["ema_state_dict"] = to_tao_state_dict(trainer.ema.module)
        ckpt["ema"] = trainer.ema.state_dict()
    if trainer.scaler.is_enabled():
        ckpt["grad_scaler"] = trainer.scaler.state_dict()
    return ckpt


def point_latest(folder: Path, target: Path) -> None:
    """Atomically make ``rtdetr_model_latest.pth`` refer to ``target`` (a file in ``folder``)."""
    latest = folder / LATEST_NAME
    tmp = folder / f".{LATEST_NAME}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(target.name)
    except OSError:  # filesystems without symlinks: a hard link, else a copy
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
    tmp.replace(latest)
    fsync_dir(folder)


def save_checkpoint(ckpt: dict[str, Any], folder: str | Path) -> Path:
    """Write ``ckpt`` as ``model_epoch_{epoch:03d}.pth`` and point the latest link at it."""
    folder = Path(folder)
    path = folder / CHECKPOINT_NAME.format(epoch=int(ckpt["epoch"]))
    atomic_torch_save(ckpt, path)
    point_latest(folder, path)
    return path


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temp files a killed writer left behind (never picked as checkpoints anyway)."""
    count = 0
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        count += 1
    return count


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU (weights only, no code run), or raise
    :class:`CheckpointError`."""
    from rtdetr_trainer.model.safe_load import UnsafeCheckpointError, safe_torch_load

    p = Path(path)
    try:
        ckpt = safe_torch_load(p)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: checkpoint not found") from None
    except UnsafeCheckpointError as e:
        raise CheckpointError(str(e)) from None
    except Exception as e:  # truncated zip, bad pickle, wrong magic number...
        raise CheckpointError(f"{p}: not a loadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "epoch" not in ckpt:
        raise CheckpointError(f"{p}: not a training checkpoint (no state_dict/epoch)")
    return ckpt


def epoch_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every ``model_epoch_NNN.pth`` in ``folder``, newest first."""
    out = []
    for p in Path(folder).glob("model_epoch_*.pth"):
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out, reverse=True)


def find_resume_checkpoint(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from in ``folder``, loaded; None when there is none.

    The newest ``model_epoch_*.pth`` that loads wins (a file under its final name is complete:
    it got there by rename). That is the latest pointer's target unless a crash came between
    the rename and the pointer swap. A pointer to a file of another name (a copy made where
    symlinks are unsupported) is tried first. Damaged files are logged and skipped.
    """
    folder = Path(folder)
    tried: set[Path] = set()
    latest = folder / LATEST_NAME
    candidates = [p.resolve() for _, p in epoch_checkpoints(folder)]
    if latest.exists() and latest.resolve() not in candidates:
        candidates.insert(0, latest.resolve())
    for path in candidates:
        if path in tried:
            continue
        tried.add(path)
        try:
            ckpt = read_training_checkpoint(path)
        except CheckpointError as e:
            log.warning("skipping unusable checkpoint: %s", e)
            continue
        return path, ckpt
    return None


#: The validation metric that picks the best checkpoint when ``checkpointer.monitor`` is unset.
DEFAULT_MONITOR = "val_mAP"


def best_epoch(
    history: list[dict[str, Any]], monitor: str | None = None, mode: str | None = None
) -> int | None:
    """The epoch whose record has the best ``monitor`` value (the first of equals), or None.

    ``mode`` defaults to ``min`` for losses and ``max`` otherwise (TAO's convention).
    """
    monitor = monitor or DEFAULT_MONITOR
    mode = mode or ("min" if "loss" in monitor else "max")
    best: tuple[float, int] | None = None
    for record in history:
        value = record.get(monitor)
        if not isinstance(value, int | float) or "epoch" not in record:
            continue
        score = float(value) if mode == "max" else -float(value)
        if best is None or score > best[0]:
            best = (score, int(record["epoch"]))
    return best[1] if best else None


def prune_checkpoints(
    folder: str | Path, keep_last: int, keep: set[int] | None = None
) -> list[Path]:
    """Delete ``model_epoch_NNN.pth`` files beyond the newest ``keep_last``; returns them.

    Epochs in ``keep`` (the best) and the latest pointer's target always stay; ``keep_last``
    <= 0 keeps everything. Only files of our own name pattern are ever touched.
    """
    if keep_last <= 0:
        return []
    folder = Path(folder)
    latest = folder / LATEST_NAME
    pointed = latest.resolve() if latest.exists() else None
    removed = []
    for i, (epoch, path) in enumerate(epoch_checkpoints(folder)):
        if i < keep_last or epoch in (keep or set()) or path.resolve() == pointed:
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        fsync_dir(folder)
    return removed


def best_checkpoint(
    folder: str | Path, history: list[dict[str, Any]], monitor: str | None, mode: str | None
) -> Path | None:
    """The best epoch's checkpoint file in ``folder``, if it was written."""
    best = best_epoch(history, monitor, mode)
    if best is None:
        return None
    path = Path(folder) / CHECKPOINT_NAME.format(epoch=best)
    return path if path.is_file() else None


def retain(
    folder: str | Path,
    keep_last: int,
    history: list[dict[str, Any]],
    monitor: str | None,
    mode: str | None,
) -> list[Path]:
    """Apply ``train.keep_last_checkpoints`` after a save; logs what it removed."""
    best = best_epoch(history, monitor, mode)
    removed = prune_checkpoints(folder, keep_last, set() if best is None else {best})
    if removed:
        log.info(
            "removed %s (train.keep_last_checkpoints=%d; best by %s: epoch %s)",
            ", ".join(p.name for p in removed), keep_last, monitor or DEFAULT_MONITOR, best,
        )  # fmt: skip
    return removed
