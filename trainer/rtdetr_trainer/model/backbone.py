"""Plain ResNet-18/34/50/101 backbone with TAO's (timm's, torchvision's v1.5) parameter layout.

TAO's RT-DETR uses timm's ResNet, not the ResNet-vd of the original RT-DETR: a single 7x7 stem
conv, max-pool, stride on the 3x3 conv of each bottleneck and a 1x1 conv + BN shortcut. Keeping
the exact module names (``conv1``, ``bn1``, ``layer{1..4}.{i}.conv1/bn1/.../downsample.{0,1}``)
makes TAO checkpoints and torchvision/timm ImageNet weights load without any key mapping.

Freezing follows TAO: ``train_backbone=False`` freezes everything; with a pretrained backbone
TAO freezes stage 0 (``conv1``) and turns every BN into :class:`FrozenBatchNorm2d` (no
``num_batches_tracked`` entry). Unlike TAO, frozen parts stay in eval mode when the model is put
in training mode, so frozen BN statistics really stay frozen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rtdetr_trainer.model.layers import conv_norm


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine terms, all buffers (TAO's frozen norm).

    Its state_dict has ``weight``, ``bias``, ``running_mean``, ``running_var`` and no
    ``num_batches_tracked``; a BN state dict still loads (that counter is ignored).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def affine_terms(self) -> tuple[Tensor, Tensor]:
        """``(scale, shift)`` ``[C]``: the norm is ``x * scale + shift`` per channel (what
        :func:`rtdetr_trainer.model.layers.conv_norm` folds into the preceding conv)."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]``: one fused scale and shift per channel."""
        scale, shift = self.affine_terms()
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def _downsample(module: nn.Module, x: Tensor) -> Tensor:
    """The shortcut ``Sequential(conv, norm)`` (keys ``downsample.0/1``), folded if fixed."""
    return conv_norm(module[0], module[1], x)  # type: ignore[index]


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); stride on the first."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else _downsample(self.downsample, x)
        y = self.relu(conv_norm(self.conv1, self.bn1, x))
        y = conv_norm(self.conv2, self.bn2, y)
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 x4 (ResNet-50/101, torchvision v1.5)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else _downsample(self.downsample, x)
        y = self.relu(conv_norm(self.conv1, self.bn1, x))
        y = self.relu(conv_norm(self.conv2, self.bn2, y))
        y = conv_norm(self.conv3, self.bn3, y)
        return self.relu(y + shortcut)


#: depth -> (block type, blocks per stage). The only four depths TAO registers.
RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}
STAGE_STRIDES: tuple[int, int, int, int] = (4, 8, 16, 32)


def _frozen_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below ``module`` by a FrozenBatchNorm2d with its values."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        if module.running_mean is not None:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        if module.weight is not None:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        return frozen
    for name, child in module.named_children():
        new = _frozen_bn(child)
        if new is not child:
            setattr(module, name, new)
    return module


@contextlib.contextmanager
def _bn_stats_untouched(module: nn.Module) -> Iterator[None]:
    """During a checkpoint's recomputation, keep BN running statistics from updating twice."""
    saved = []
    for m in module.modules():
        # _BatchNorm covers SyncBatchNorm too (multi-GPU training converts BN to it).
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            saved.append((m, m.momentum, m.num_batches_tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def run_stage(stage: nn.Module, x: Tensor, *, checkpointed: bool) -> Tensor:
    """``stage(x)``, under activation checkpointing when ``checkpointed`` and gradients flow.

    The recomputation in the backward pass must not update BN running statistics a second time;
    a backbone stage draws no random numbers, so no RNG state needs restoring. Shared by every
    backbone (ResNet, EfficientViT-L2).
    """
    if not (checkpointed and torch.is_grad_enabled()):
        return stage(x)
    calls = [0]

    def run(inp: Tensor) -> Tensor:
        calls[0] += 1
        if calls[0] == 1:
            return stage(inp)
        with _bn_stats_untouched(stage):
            return stage(inp)

    return checkpoint(run, x, use_reentrant=False, preserve_rng_state=False)


class ResNet(nn.Module):
    """ResNet feature extractor returning the stages in ``return_interm_indices``.

    Args:
        depth: 18, 34, 50 or 101.
        return_interm_indices: stage indices 0..3 (layer1..layer4) to return; TAO's [1, 2, 3]
            gives C3/C4/C5 at strides 8/16/32 (512/1024/2048 channels for R50, 128/256/512 for
            R18/34).
        train_backbone: False freezes every parameter and keeps all BN in eval mode.
        freeze_at: stages to freeze (0 = the ``conv1`` stem, 1..4 = layer1..4), as TAO.
        freeze_norm: replace all BN by :class:`FrozenBatchNorm2d` (TAO with a pretrained
            backbone).
        activation_checkpoint: recompute each stage in backward (training only) to save memory.

    ``forward(x [B, 3, H, W]) -> list of [B, C_i, H / s_i, W / s_i]``.
    """

    def __init__(
        self,
        depth: int,
        return_interm_indices: Sequence[int] = (1, 2, 3),
        *,
        train_backbone: bool = True,
        freeze_at: Sequence[int] = (),
        freeze_norm: bool = False,
        activation_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(RESNET_LAYOUTS)}")
        if not return_interm_indices or any(i not in (0, 1, 2, 3) for i in return_interm_indices):
            raise ValueError(f"return_interm_indices must be in 0..3, got {return_interm_indices}")
        block, counts = RESNET_LAYOUTS[depth]
        self.depth = depth
        self.return_interm_indices = list(return_interm_indices)
        self.activation_checkpoint = activation_checkpoint
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        stage_channels = []
        for idx, (planes, n) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
            stride = 1 if idx == 0 else 2
            out_ch = planes * block.expansion
            down = None
            if stride != 1 or in_ch != out_ch:
                down = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
                )
            blocks = [block(in_ch, planes, stride, down)]
            blocks += [block(out_ch, planes, 1, None) for _ in range(n - 1)]
            self.add_module(f"layer{idx + 1}", nn.Sequential(*blocks))
            stage_channels.append(out_ch)
            in_ch = out_ch
        self.out_channels = [stage_channels[i] for i in self.return_interm_indices]
        self.out_strides = [STAGE_STRIDES[i] for i in self.return_interm_indices]
        self._init_weights()

        if freeze_norm:
            _frozen_bn(self)
        self._frozen: list[nn.Module] = []
        if not train_backbone:
            self._frozen = [self]
        else:
            stages = {0: self.conv1, 1: self.layer1, 2: self.layer2, 3: self.layer3, 4: self.layer4}
            for key in freeze_at:
                if key not in stages:
                    raise ValueError(f"freeze_at entry {key} is not a stage (0..4)")
                self._frozen.append(stages[key])
        for m in self._frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        self.train()

    def _init_weights(self) -> None:
        """timm's init: Kaiming (fan_out) convs, unit BN, zero last BN of each residual branch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock | Bottleneck):
                nn.init.zeros_(m.last_norm().weight)

    def train(self, mode: bool = True) -> ResNet:
        """Set train/eval mode but keep frozen parts in eval mode (their BN stats stay fixed)."""
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            if m is self:
                nn.Module.train(self, False)
            else:
                m.eval()
        return self

    def _run_stage(self, stage: nn.Module, x: Tensor) -> Tensor:
        return run_stage(stage, x, checkpointed=self.activation_checkpoint and self.training)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> the selected stage outputs, strides ``out_strides``."""
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x)))
        outs = []
        last = max(self.return_interm_indices)
        for idx, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = self._run_stage(stage, x)
            if idx in self.return_interm_indices:
                outs.append(x)
            if idx == last:
                break
        return outs
