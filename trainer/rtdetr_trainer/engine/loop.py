"""The training loop: one worker process of ``rtdetr train`` (any rank, any node).

Per optimizer step: multi-scale resize of the batch (nearest, one of ``augmentation.multi_scales``
as TAO's ``training_step``), forward with targets (denoising), weighted loss terms summed, backward
(GradScaler for fp16), gradient clipping at ``train.clip_grad_norm``, AdamW step with TAO's four
groups, EMA update. Per epoch: learning-rate decay, validation every ``validation_interval``
epochs, a checkpoint every ``checkpoint_interval`` epochs (and always after the last one), a TAO
status line and a metrics record.

Resume: ``train.resume_training_checkpoint_path`` if set, else the newest loadable checkpoint in
the task's results folder, else the file in ``RTDETR_RESUME_FROM`` (the operator's resumeFrom,
which a restarted group never goes back to), restores weights, optimizer, EMA, epoch and step.
Randomness is reseeded from (seed, epoch, rank) at each epoch start, so a resumed epoch draws
the same samples and augmentations as an uninterrupted run would.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from rtdetr_spec import ExperimentSpec
from rtdetr_spec.reporting import TaskSummary
from rtdetr_trainer.data.datasets import Batch, TrainSampler
from rtdetr_trainer.data.pipeline import TrainData
from rtdetr_trainer.engine import checkpoint as ckpt_io
from rtdetr_trainer.engine.best import BestModel
from rtdetr_trainer.engine.distributed import DistContext
from rtdetr_trainer.engine.ema import ModelEMA
from rtdetr_trainer.engine.live import LiveProgress
from rtdetr_trainer.engine.optim import LRSchedule, apply_freeze, build_optimizer
from rtdetr_trainer.engine.progress import Progress
from rtdetr_trainer.engine.reporting import finish, read_summary, report_epoch  # noqa: F401
from rtdetr_trainer.engine.tracking import STEP_EVERY, Tracker, validation_pictures
from rtdetr_trainer.engine.train_loader import train_loader
from rtdetr_trainer.engine.validation import ValidationResult, Validator
from rtdetr_trainer.errors import CheckpointError, TrainerError
from rtdetr_trainer.results import TaskResults

#: A checkpoint to resume from while the results folder holds none (set by the operator).
RESUME_FROM_ENV = "RTDETR_RESUME_FROM"
log = logging.getLogger(__name__)

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class TrainingDivergedError(TrainerError):
    """The loss became NaN/inf."""


@dataclass
class TrainState:
    epoch: int = 0  # next epoch to run
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _seed_everything(seed: int, epoch: int, rank: int) -> None:
    s = (max(seed, 0) * 1_000_003 + epoch * 4099 + rank) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class Trainer:
    """Runs ``train`` for one rank. The model and criterion come from the caller."""

    def __init__(
        self,
        spec: ExperimentSpec,
        ctx: DistContext,
        data: TrainData,
        model: nn.Module,
        criterion: nn.Module,
        results: TaskResults,
    ) -> None:
        self.spec, self.ctx, self.data, self.results = spec, ctx, data, results
        self.cfg = spec.train
        self.raw_model = model.to(ctx.device)
        self.criterion = criterion.to(ctx.device)
        self.autocast_dtype = AUTOCAST[self.cfg.precision]
        frozen = apply_freeze(model, self.cfg.freeze, train_backbone=spec.model.train_backbone)
        if frozen:
            log.info("froze %d parameter tensors (train.freeze / model.train_backbone)", frozen)
        self.model: nn.Module = model
        if ctx.distributed:
            if ctx.device.type == "cuda":
                self.raw_model = nn.SyncBatchNorm.convert_sync_batchnorm(self.raw_model)
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.model = DistributedDataParallel(
                self.raw_model, device_ids=ids, find_unused_parameters=True
            )
        else:
            self.model = self.raw_model
        self.optimizer = build_optimizer(self.raw_model, self.cfg.optim)
        self.schedule = LRSchedule.from_config(self.optimizer, self.cfg.optim)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.cfg.precision == "fp16")
        self.ema = (
            ModelEMA(self.raw_model, self.cfg.ema.decay, every_n_steps=self.cfg.ema.every_n_steps)
            if self.cfg.enable_ema
            else None
        )
        self.scales = spec.dataset.augmentation.scales_hw()
        self.state = TrainState()
        self.last_losses: dict[str, torch.Tensor] = {}  # the last step's terms, for tracking

    # ------------------------------------------------------------------ setup
    def _validator(self) -> Validator:
        aug = self.spec.dataset.augmentation
        h, w = aug.eval_spatial_size
        return Validator(
            self.ctx,
            self.data.val,
            self.data.val_categories,
            self.data.class_map,
            input_size=(h, w),
            batch_size=self.spec.dataset.batch_size,
            workers=self.spec.dataset.workers,
            criterion=self.criterion,
            num_select=self.spec.model.num_select,
            autocast_dtype=self.autocast_dtype,
        )

    def resume_or_initialise(self) -> None:
        """Restore a checkpoint (explicit or the newest in the results folder) or pretrained."""
        explicit = self.cfg.resume_training_checkpoint_path
        chosen: str | None = None
        ckpt: dict[str, Any] | None = None
        if self.ctx.is_main:
            if self.results.dir.exists():
                ckpt_io.remove_stale_temp_files(self.results.dir)
            if explicit:
                chosen = explicit
            else:
                found = ckpt_io.find_resume_checkpoint(self.results.dir)
                if found:
                    chosen, ckpt = str(found[0]), found[1]
                else:  # another run to continue (spec.resumeFrom), while this one has none
                    chosen = os.environ.get(RESUME_FROM_ENV) or None
        chosen = self.ctx.broadcast_object(chosen)  # every rank resumes from the same file
        if chosen:
            if ckpt is None:
                try:
                    ckpt = ckpt_io.read_training_checkpoint(chosen)
                except CheckpointError as e:
                    where = "train.resume_training_checkpoint_path" if explicit else RESUME_FROM_ENV
                    where += ": "
                    shared = (
                        " (on several nodes results_dir must be shared storage)"
                        if self.ctx.world_size > self.ctx.local_world_size
                        else ""
                    )
                    raise CheckpointError(f"{where}{e}{shared}") from None
            self._restore(chosen, ckpt)
            if self.cfg.pretrained_model_path:
                log.info("resuming, so train.pretrained_model_path is not loaded")
        elif self.cfg.pretrained_model_path:
            from rtdetr_trainer.model.weights import load_pretrained

            try:
                report = load_pretrained(self.raw_model, self.cfg.pretrained_model_path)
            except (ValueError, FileNotFoundError) as e:
                raise CheckpointError(f"train.pretrained_model_path: {e}") from None
            if report.reinitialised:
                log.info(
                    "re-initialised for %d classes (shapes differ from %s): %s",
                    self.spec.dataset.num_classes,
                    self.cfg.pretrained_model_path,
                    ", ".join(report.reinitialised),
                )
            if self.ema is not None:
                self.ema.module.load_state_dict(self.raw_model.state_dict())

    def _restore(self, path: str, ckpt: dict[str, Any]) -> None:
        from rtdetr_trainer.model.weights import load_strict

        saved_map = ckpt.get("class_map")
        if saved_map and saved_map != self.data.class_map.model_dump():
            raise CheckpointError(
                f"{path}: its class map differs from the one this dataset gives "
                f"({saved_map} vs {self.data.class_map.model_dump()}); resuming would scramble "
                "the classes. Use a new results_dir, or the same annotation categories"
            )
        try:
            load_strict(self.raw_model, ckpt, expected=self._expected())
            if self.ema is not None and isinstance(ckpt.get("ema_state_dict"), dict):
                load_strict(self.ema.module, {"state_dict": ckpt["ema_state_dict"]})
                self.ema.load_state_dict(ckpt.get("ema", {}))
        except ValueError as e:
            raise CheckpointError(f"cannot resume from {path}: {e}") from None
        if ckpt.get("optimizer_states"):
            try:
                self.optimizer.load_state_dict(ckpt["optimizer_states"][0])
            except ValueError as e:
                raise CheckpointError(
                    f"cannot resume from {path}: its optimizer state does not fit ({e}); "
                    "was train.freeze changed?"
                ) from None
        if ckpt.get("grad_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        self.state.epoch = int(ckpt["epoch"]) + 1
        self.state.global_step = int(ckpt.get("global_step", 0))
        self.state.history = list(ckpt.get("history", []))
        log.info(
            "resuming from %s: epoch %d done, global step %d",
            path,
            int(ckpt["epoch"]),
            self.state.global_step,
        )

    def _expected(self) -> dict[str, Any]:
        return {
            "dataset.num_classes": self.spec.dataset.num_classes,
            "model.backbone": self.spec.model.backbone,
        }

    # ------------------------------------------------------------------ steps
    def _to_device(self, batch: Batch) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        dev = self.ctx.device
        images = batch.images.to(dev, non_blocking=True)
        targets = [{k: v.to(dev, non_blocking=True) for k, v in t.items()} for t in batch.targets]
        return images, targets

    def train_step(self, batch: Batch) -> dict[str, float]:
        batch.raise_if_failed()
        self.schedule.apply(self.optimizer, self.state.epoch, self.state.global_step)
        images, targets = self._to_device(batch)
        size = random.choice(self.scales)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="nearest")
        with torch.autocast(
            self.ctx.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            outputs = self.model(images, targets)
            losses = self.criterion(outputs, targets)
        loss = sum(losses.values())
        self.last_losses = {k: v.detach() for k, v in losses.items()}
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"the loss became {float(loss)} at epoch {self.state.epoch} step "
                f"{self.state.global_step}; lower train.optim.lr or use precision fp32/bf16"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.raw_model)
        self.state.global_step += 1
        return {"loss": float(loss.detach()), "lr": float(self.optimizer.param_groups[-1]["lr"])}

    def checkpoint(self, epoch: int, metrics: dict[str, Any]) -> Path:
        return ckpt_io.save_checkpoint(self.checkpoint_state(epoch, metrics), self.results.dir)

    def checkpoint_state(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return ckpt_io.trainer_state(self, epoch, metrics)

    # ------------------------------------------------------------------ loop
    def fit(self) -> TaskSummary:
        cfg, ctx = self.cfg, self.ctx
        self.resume_or_initialise()
        self.results.write_spec()  # only now: a refused resume leaves the old spec in place
        if self.state.epoch >= cfg.num_epochs:
            log.info("training already finished (%d epochs done)", self.state.epoch)
            return self._finish(self.state.epoch - 1, None, self._last_checkpoint())
        loader, sampler = train_loader(self.spec, self.data, self.cfg.seed, self.ctx)
        validator = self._validator()
        tracker = Tracker(
            self.spec, self.results.dir, enabled=ctx.is_main, resume_step=self.state.global_step
        )
        try:
            return self._epochs(loader, sampler, validator, tracker)
        finally:
            tracker.close()

    def _epochs(
        self, loader: DataLoader, sampler: TrainSampler, validator: Validator, tracker: Tracker
    ) -> TaskSummary:
        cfg, ctx = self.cfg, self.ctx
        best = BestModel(self.results.dir, self.state.history)
        names = self.data.class_map.names_by_index()
        last_ckpt: Path | None = self._last_checkpoint()
        val: ValidationResult | None = None
        epoch_times: list[float] = []
        live = LiveProgress(cfg.num_epochs, len(loader), self.state.epoch, enabled=ctx.is_main)
        for epoch in range(self.state.epoch, cfg.num_epochs):
            self.state.epoch = epoch
            started = time.time()
            _seed_everything(cfg.seed, epoch, ctx.rank)
            sampler.set_epoch(epoch)
            self.model.train()
            progress = Progress(
                epoch=epoch, num_epochs=cfg.num_epochs, total=len(loader), enabled=ctx.is_main
            )
            loss_sum, steps = 0.0, 0
            for batch in loader:
                values = self.train_step(batch)
                loss_sum, steps = loss_sum + values["loss"], steps + 1
                progress.update(**values)
                live.step(epoch, steps, self.state.global_step, values)
                if ctx.is_main and (
                    self.state.global_step % STEP_EVERY == 0 or steps == len(loader)
                ):
                    losses = {k: float(v) for k, v in self.last_losses.items()}
                    tracker.step(self.state.global_step, losses, values["lr"])
                if ctx.is_main and self.state.global_step % 10 == 0:
                    self.results.metrics(
                        {"type": "step", "epoch": epoch, "step": self.state.global_step, **values}
                    )
            progress.close()
            record: dict[str, Any] = {
                "type": "epoch",
                "epoch": epoch,
                **ctx.mean({"train_loss": loss_sum / max(steps, 1)}),
            }
            last = epoch == cfg.num_epochs - 1
            if (epoch + 1) % cfg.validation_interval == 0 or last:
                model = self.raw_model
                if self.ema is not None and not cfg.ema.validate_original_weights:
                    model = self.ema.module
                val = validator.run(model)
                tracker.images(self.state.global_step, validation_pictures(val.samples, names))
                record["val_loss"] = val.loss
                if val.metrics is not None:
                    record.update(
                        val_mAP=val.metrics.mAP,
                        val_mAP50=val.metrics.mAP50,
                        val_per_class_AP50=val.metrics.per_class_AP50,
                    )
            self.state.history.append({k: v for k, v in record.items() if k != "type"})
            if ctx.is_main and ((epoch + 1) % cfg.checkpoint_interval == 0 or last):
                last_ckpt = self.checkpoint(epoch, record)
                log.info("saved %s", last_ckpt)
                cp = cfg.checkpointer  # keep the newest keep_last_checkpoints and the best
                ckpt_io.retain(
                    self.results.dir, cfg.keep_last_checkpoints, self.state.history, *cp.watch()
                )
            if ctx.is_main:  # model_best.pth: by val_mAP50, whatever checkpoint_interval says
                best.offer(epoch, record, partial(self.checkpoint_state, epoch, record))
            ctx.barrier()
            epoch_times.append(time.time() - started)
            self._report_epoch(epoch, record, epoch_times)
            live.epoch_end(epoch, self.state.global_step, record)
            tracker.epoch(epoch, self.state.global_step, record)
        return self._finish(cfg.num_epochs - 1, val, last_ckpt)

    def _last_checkpoint(self) -> Path | None:
        latest = self.results.dir / ckpt_io.LATEST_NAME
        return latest.resolve() if latest.exists() else None

    def _report_epoch(self, epoch: int, record: dict[str, Any], times: list[float]) -> None:
        if self.ctx.is_main:
            report_epoch(self.results, epoch, self.cfg.num_epochs, record, times)

    def _finish(
        self, epoch: int, val: ValidationResult | None, last_ckpt: Path | None
    ) -> TaskSummary:
        return finish(
            self.results,
            epoch,
            self.cfg.num_epochs,
            self.state.history,
            val.metrics if val is not None else None,
            last_ckpt,
            writer=self.ctx.is_main,
            best_checkpoint=ckpt_io.best_checkpoint(
                self.results.dir, self.state.history, *self.cfg.checkpointer.watch()
            ),
            best_model=BestModel(self.results.dir, self.state.history).existing(),
        )
