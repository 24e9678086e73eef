"""AdamW with TAO's four parameter groups, the epoch step schedule with linear warm-up, freezing.

TAO's groups (``cv/rtdetr/model/pl_rtdetr_model.py``):

1. backbone parameters: ``optim.lr_backbone``;
2. encoder biases and norm weights: weight decay 0;
3. decoder biases and norm weights: weight decay 0;
4. everything else: ``optim.lr`` and ``optim.weight_decay``.

TAO selects group 1 with ``re.match('backbone', name)`` on names that start with
``model.backbone``, so it never matches and the backbone trains at ``lr``. Here names are taken
relative to the detector (``backbone.conv1.weight``), so ``lr_backbone`` really applies. TAO also
ignores ``warmup_steps``; here it is a linear warm-up over the first optimizer steps.

The schedule is MultiStep (decay by ``lr_decay`` at each epoch in ``lr_steps``) or StepLR (every
``lr_step_size`` epochs), stepped per epoch as TAO's Lightning scheduler is.
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rtdetr_spec.train import OptimConfig
from rtdetr_trainer.errors import UserInputError

log = logging.getLogger(__name__)

#: TAO's selectors, applied to names relative to the detector.
ENCODER_NO_DECAY = re.compile(r"^(?=.*encoder(?=.*bias|.*norm.*weight)).*$")
DECODER_NO_DECAY = re.compile(r"^(?=.*decoder(?=.*bias|.*norm.*weight)).*$")
GROUP_NAMES = ("backbone", "encoder_no_decay", "decoder_no_decay", "default")


def group_of(name: str) -> str:
    """Which of TAO's four groups a parameter (named relative to the detector) belongs to."""
    if name.startswith("backbone."):
        return "backbone"
    if ENCODER_NO_DECAY.match(name):
        return "encoder_no_decay"
    if DECODER_NO_DECAY.match(name):
        return "decoder_no_decay"
    return "default"


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters split into TAO's groups (empty groups dropped).

    Each group carries ``name`` (one of :data:`GROUP_NAMES`) and its ``lr``/``weight_decay``.
    """
    buckets: dict[str, list[nn.Parameter]] = {g: [] for g in GROUP_NAMES}
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets[group_of(name)].append(p)
    settings = {
        "backbone": {"lr": cfg.lr_backbone, "weight_decay": cfg.weight_decay},
        "encoder_no_decay": {"lr": cfg.lr, "weight_decay": 0.0},
        "decoder_no_decay": {"lr": cfg.lr, "weight_decay": 0.0},
        "default": {"lr": cfg.lr, "weight_decay": cfg.weight_decay},
    }
    return [{"name": g, "params": ps, **settings[g]} for g in GROUP_NAMES if (ps := buckets[g])]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    groups = param_groups(model, cfg)
    if not groups:
        raise UserInputError("no trainable parameters: train.freeze froze the whole model")
    for g in groups:
        log.info(
            "param group %-16s %4d tensors, lr %.2e, weight decay %.1e",
            g["name"],
            len(g["params"]),
            g["lr"],
            g["weight_decay"],
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def apply_freeze(model: nn.Module, prefixes: list[str], *, train_backbone: bool = True) -> int:
    """Freeze parameters under each module path (``backbone``, ``encoder.input_proj``, ...).

    TAO's ``train.freeze`` names modules under ``model.model``; a prefix that names nothing is an
    error rather than a silent no-op. ``model.train_backbone: false`` freezes ``backbone``.

    Returns the number of frozen tensors.
    """
    wanted = list(prefixes) + ([] if train_backbone else ["backbone"])
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        clean = prefix.removeprefix("model.model.")
        if not any(n == clean or n.startswith(clean + ".") for n in names):
            raise UserInputError(
                f"train.freeze: {prefix!r} names no module of the model (top-level modules: "
                f"{', '.join(sorted({n.split('.')[0] for n in names}))})"
            )
    frozen = 0
    for name, p in model.named_parameters():
        for prefix in wanted:
            clean = prefix.removeprefix("model.model.")
            if name == clean or name.startswith(clean + "."):
                p.requires_grad_(False)
                frozen += 1
                break
    return frozen


@dataclass
class LRSchedule:
    """Learning rate per group as a function of (epoch, optimizer step).

    lr = base_lr * decay_factor(epoch) * min(1, (step + 1) / warmup_steps)
    """

    base_lrs: list[float]
    kind: str  # MultiStep | StepLR
    milestones: list[int]
    step_size: int
    gamma: float
    warmup_steps: int

    @classmethod
    def from_config(cls, optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> LRSchedule:
        return cls(
            base_lrs=[float(g["lr"]) for g in optimizer.param_groups],
            kind=cfg.lr_scheduler,
            milestones=sorted(cfg.lr_steps),
            step_size=cfg.lr_step_size,
            gamma=cfg.lr_decay,
            warmup_steps=cfg.warmup_steps,
        )

    def decay(self, epoch: int) -> float:
        if self.kind == "StepLR":
            return self.gamma ** (epoch // self.step_size)
        return self.gamma ** bisect.bisect_right(self.milestones, epoch)

    def warmup(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (step + 1) / self.warmup_steps)

    def lrs(self, epoch: int, step: int) -> list[float]:
        factor = self.decay(epoch) * self.warmup(step)
        return [lr * factor for lr in self.base_lrs]

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> None:
        for group, lr in zip(optimizer.param_groups, self.lrs(epoch, step), strict=True):
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        """Lightning-like scheduler entry for the checkpoint's ``lr_schedulers`` list."""
        return {
            "kind": self.kind,
            "base_lrs": list(self.base_lrs),
            "milestones": list(self.milestones),
            "step_size": self.step_size,
            "gamma": self.gamma,
            "warmup_steps": self.warmup_steps,
        }
