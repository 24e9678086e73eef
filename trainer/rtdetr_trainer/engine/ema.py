"""Exponential moving average of the weights (``train.enable_ema``), as RT-DETR's ModelEMA.

decay_t = ema.decay * (1 - exp(-updates / warmup)): early in training the average follows the
weights closely, later it smooths them (warm-up of 2000 updates, RT-DETR's default). Every
floating-point tensor of the state dict is averaged, BN running statistics included. The EMA
copy is what validation scores (unless ``ema.validate_original_weights``) and is saved as
``ema_state_dict`` in every checkpoint.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

WARMUP_UPDATES = 2000


class ModelEMA:
    def __init__(
        self,
        model: nn.Module,
        decay: float,
        *,
        every_n_steps: int = 1,
        warmup: int = WARMUP_UPDATES,
    ) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup, self.every_n_steps = decay, warmup, every_n_steps
        self.updates = 0
        self._calls = 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmup))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self._calls += 1
        if self._calls % self.every_n_steps:
            return
        self.updates += 1
        d = self.current_decay()
        own = self.module.state_dict()
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                own[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                own[k].copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "calls": self._calls, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self._calls = int(state.get("calls", self.updates * self.every_n_steps))
