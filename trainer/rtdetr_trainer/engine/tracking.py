"""Experiment tracking for ``rtdetr train``: TensorBoard event files and, when enabled, W&B.

Only global rank 0 tracks. TensorBoard (``torch.utils.tensorboard``) writes to
``<results>/train/tensorboard/``:

* ``loss/total``, ``loss/{vfl,bbox,giou}`` (last decoder layer), ``loss_aux/*`` (earlier decoder
  layers and the encoder proposals, summed), ``loss_dn/*`` (denoising groups, summed) and
  ``lr`` every :data:`STEP_EVERY` optimizer steps and at the end of each epoch, against the
  global step;
* per epoch: ``epoch/train_loss``, ``val/loss``, ``val/mAP``, ``val/mAP50``,
  ``val_AP50/<class>``;
* per validation: ``val_images/<n>``, a few validation images with true boxes (left) and
  predicted boxes with score >= :data:`IMAGE_SCORE` (right), HWC uint8.

A resumed run purges events past the resumed step, so curves do not fold back on themselves.

Weights & Biases: the spec's ``wandb`` block is honoured when ``wandb.enable`` is true. A run
starts when an API key is available (``WANDB_API_KEY`` or a ``~/.netrc`` entry for
api.wandb.ai) or ``WANDB_MODE`` is ``offline``/``disabled``; its files go under
``<results>/train/wandb/``. Without either, one warning line says why nothing goes to W&B, and
training continues. The run's config is the resolved spec with secret-like values redacted.

MLflow is not supported: its client (mlflow-skinny 3.18) would add 23 packages to the trainer
image's lock (a web framework and server, a cloud SDK, cryptography, GitPython). A run with
``MLFLOW_TRACKING_URI`` set says so in one warning line naming where its metrics are instead,
rather than leaving the user to wonder why the MLflow server stays empty.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rtdetr_spec import ExperimentSpec, dump_experiment

log = logging.getLogger(__name__)

#: Optimizer steps between two loss/lr points (the same cadence as metrics.jsonl).
STEP_EVERY = 10
#: Predictions drawn on validation images score at least this.
IMAGE_SCORE = 0.3
#: Validation images logged per validation.
NUM_IMAGES = 4
_TERM = re.compile(r"^loss_(?P<term>[a-z]+)(?P<suffix>(?:_(?:aux|enc|dn)_\d+)*)$")


def loss_scalars(losses: dict[str, float]) -> dict[str, float]:
    """Criterion terms -> TensorBoard tags: last layer per term, aux/enc and dn sums, total."""
    out: dict[str, float] = {"loss/total": float(sum(losses.values()))}
    for key, value in losses.items():
        m = _TERM.match(key)
        if m is None:
            out[f"loss/{key}"] = float(value)
            continue
        suffix = m["suffix"]
        group = "loss_dn" if "_dn_" in suffix else "loss_aux" if suffix else "loss"
        tag = f"{group}/{m['term']}"
        out[tag] = out.get(tag, 0.0) + float(value)
    return out


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """An epoch record (``metrics.jsonl``'s) -> TensorBoard tags."""
    names = {"train_loss": "epoch/train_loss", "val_loss": "val/loss"}
    names |= {"val_mAP": "val/mAP", "val_mAP50": "val/mAP50"}
    out = {tag: float(record[k]) for k, tag in names.items() if _number(record.get(k))}
    for name, ap in (record.get("val_per_class_AP50") or {}).items():
        if _number(ap):
            out[f"val_AP50/{name}"] = float(ap)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def wandb_credentials() -> str | None:
    """Why W&B cannot start here (no key, not offline), or None when it can."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled") or os.environ.get("WANDB_API_KEY"):
        return None
    try:
        path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
        if netrc.netrc(path).authenticators("api.wandb.ai"):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return "no W&B API key (WANDB_API_KEY or ~/.netrc) and WANDB_MODE is not offline"


class Tracker:
    """TensorBoard (always, on rank 0) and W&B (``wandb.enable``) for one training run."""

    def __init__(
        self, spec: ExperimentSpec, folder: Path, *, enabled: bool, resume_step: int = 0
    ) -> None:
        self.enabled = enabled
        self.tb: Any = None
        self.wandb: Any = None
        self._wandb_scalars = True
        if not enabled:
            return
        if os.environ.get("MLFLOW_TRACKING_URI"):
            log.warning(
                "MLFLOW_TRACKING_URI is set but rtdetr train does not log to MLflow; its metrics "
                "are in %s and TensorBoard event files in %s",
                folder / "metrics.jsonl",
                folder / "tensorboard",
            )
        self._start_wandb(spec, folder)  # before TensorBoard: sync_tensorboard patches it
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(
            log_dir=str(folder / "tensorboard"), purge_step=resume_step or None, flush_secs=30
        )

    def _start_wandb(self, spec: ExperimentSpec, folder: Path) -> None:
        cfg = spec.wandb
        if not cfg.enable:
            return
        why = wandb_credentials()
        if why is not None:
            log.warning(
                "wandb.enable is true but %s: not logging to Weights & Biases (set one, or "
                "wandb.enable=false)",
                why,
            )
            return
        try:
            import wandb

            folder.mkdir(parents=True, exist_ok=True)
            self.wandb = wandb.init(
                project=cfg.project,
                entity=cfg.entity or None,
                group=cfg.group or None,
                tags=list(cfg.tags) or None,
                name=cfg.name,
                id=cfg.run_id or None,
                resume="allow" if cfg.run_id else None,
                dir=str(folder),
                config=yaml.safe_load(dump_experiment(spec)),
                save_code=cfg.save_code,
                sync_tensorboard=cfg.sync_tensorboard,
                reinit="finish_previous" if cfg.reinit else "default",
            )
        except Exception as e:  # a network or server problem must not stop training
            first = (str(e).splitlines() or [""])[0][:300]
            log.warning("wandb: could not start a run (%s: %s); continuing without it",
                        type(e).__name__, first)  # fmt: skip
            self.wandb = None
            return
        self._wandb_scalars = not cfg.sync_tensorboard  # else W&B copies TensorBoard's points
        log.info("wandb: run %s in %s", self.wandb.id, folder / "wandb")

    def _scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.tb.add_scalar(tag, value, step)
        if self.wandb is not None and self._wandb_scalars:
            self.wandb.log({**values, "global_step": step}, step=step)

    def step(self, step: int, losses: dict[str, float], lr: float) -> None:
        """Loss terms and learning rate after optimizer step ``step``."""
        if self.enabled:
            self._scalars({**loss_scalars(losses), "lr": float(lr)}, step)

    def epoch(self, epoch: int, step: int, record: dict[str, Any]) -> None:
        """An epoch's record (train loss; validation loss, mAP, per-class AP50 when it ran)."""
        if self.enabled:
            self._scalars({**epoch_scalars(record), "epoch": float(epoch)}, step)
            self.tb.flush()

    def images(self, step: int, images: Sequence[np.ndarray]) -> None:
        """Validation pictures (HWC uint8, truth | prediction) at ``step``."""
        if not self.enabled or not images:
            return
        for n, img in enumerate(images):
            self.tb.add_image(f"val_images/{n}", img, step, dataformats="HWC")
        if self.wandb is not None:
            import wandb

            self.wandb.log({"val_images": [wandb.Image(img) for img in images]}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def validation_pictures(
    samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]],
    names: Sequence[str | None],
    *,
    score: float = IMAGE_SCORE,
) -> list[np.ndarray]:
    """(image CHW float 0..1 at input size, true labels [N], true boxes [N, 4] normalized cxcywh,
    detections in original pixels scaled to input size) -> truth | prediction, HWC uint8."""
    from PIL import Image

    from rtdetr_serving.annotate import draw_boxes, palette_colors

    colors = palette_colors(list(names))
    out = []
    for chw, labels, boxes, det in samples:
        h, w = chw.shape[1:]
        img = Image.fromarray((np.clip(chw.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8))
        truth: list[tuple[str, float, tuple[float, float, float, float]]] = []
        for label, (cx, cy, bw, bh) in zip(labels, boxes, strict=True):
            name = names[int(label)] if int(label) < len(names) else None
            if name:
                x1, y1 = float((cx - bw / 2) * w), float((cy - bh / 2) * h)
                truth.append((name, 1.0, (x1, y1, x1 + float(bw * w), y1 + float(bh * h))))
        pred: list[tuple[str, float, tuple[float, float, float, float]]] = []
        for s, label, box in zip(det["scores"], det["labels"], det["boxes"], strict=True):
            name = names[int(label)] if int(label) < len(names) else None
            if name and float(s) >= score:
                x1, y1, x2, y2 = (float(v) for v in box)
                pred.append((name, float(s), (x1, y1, x2, y2)))
        left = np.asarray(draw_boxes(img, truth, colors))
        right = np.asarray(draw_boxes(img, pred, colors))
        gap = np.full((h, 4, 3), 255, dtype=np.uint8)
        out.append(np.concatenate([left, gap, right], axis=1))
    return out


def sample_images(batch: Any, detections: Sequence[dict[str, np.ndarray]], limit: int) -> list:
    """Up to ``limit`` (image, true labels, true boxes, detections at input scale) of a
    validation batch (images float [B, 3, H, W]; detections in original pixels)."""
    out: list = []
    h, w = batch.images.shape[-2:]
    for i, det in enumerate(detections[:limit]):
        ow, oh = (float(v) for v in batch.orig_sizes[i])
        scale = np.asarray([w / ow, h / oh, w / ow, h / oh], dtype=np.float32)
        scaled = {**det, "boxes": np.asarray(det["boxes"], dtype=np.float32) * scale}
        target = batch.targets[i]
        out.append(
            (
                batch.images[i].float().cpu().numpy(),
                target["labels"].cpu().numpy(),
                target["boxes"].cpu().numpy(),
                scaled,
            )
        )
    return out
