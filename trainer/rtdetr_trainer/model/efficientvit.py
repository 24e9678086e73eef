"""EfficientViT-L2 backbone with TAO's parameter layout (``backbone: efficientvit_l2``).

TAO's RT-DETR builds this backbone after MIT's EfficientViT "L" series: five stages of widths
32/64/128/256/512, convolutions in the first four, multi-scale ReLU linear attention in the last.
The module names here (``stages.{i}.op_list.{j}.main.spatial_conv.conv``, ``context_module``,
``local_module``, ``norm1..3``) are TAO's, so TAO checkpoints load by name with no key mapping
(348 backbone tensors, 41 batch norms).

Layout, for an input ``[B, 3, H, W]`` (GELU is the tanh approximation everywhere):

* stage 0, stride 2: 3x3 stem conv 3->32 (BN, GELU), one residual ``ResBlock`` (two 3x3 convs);
* stages 1, 2, stride 4, 8: ``FusedMBConv`` (3x3 conv to a hidden width, 1x1 conv back), a
  stride-2 one with expansion 16 then 2 residual ones with expansion 4 (64, 128 channels);
* stage 3, stride 16: ``MBConv`` with BN only after the last 1x1 conv, stride-2 expansion 16
  then 8 residual ones with expansion 4 (256 channels);
* stage 4, stride 32: one stride-2 ``MBConv`` (expansion 24) to 512 channels, then 8
  ``EfficientViTBlock`` (linear attention ``context_module`` + ``MBConv`` ``local_module``);
* stages 2, 3, 4 go through ``norm1``, ``norm2``, ``norm3`` (LayerNorm over channels) and feed
  the encoder: 128/256/512 channels at strides 8/16/32.

Batch norms train as ordinary BN (TAO never freezes them for this backbone unless the whole
backbone is frozen); ``freeze_norm=True`` is TAO's export mode (FrozenBatchNorm2d, no
``num_batches_tracked``). Fixed norms are folded into their convolutions on the fly
(:func:`rtdetr_trainer.model.layers.conv_norm`), as in the ResNet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr_trainer.model.backbone import _frozen_bn, run_stage
from rtdetr_trainer.model.layers import conv_norm

#: Stage widths and depths of L2 (stages 1-4 hold ``depth + 1`` blocks: stride 2 first).
L2_WIDTHS: tuple[int, ...] = (32, 64, 128, 256, 512)
L2_DEPTHS: tuple[int, ...] = (1, 2, 2, 8, 8)
STAGE_STRIDES: tuple[int, ...] = (2, 4, 8, 16, 32)
#: Attention: channels per head, aggregation kernel sizes, denominator epsilon.
HEAD_DIM = 32
AGGREGATION_SCALES: tuple[int, ...] = (5,)
ATTENTION_EPS = 1e-15
#: At or below this many positions the attention is computed as an explicit N x N map.
QUADRATIC_MAX_TOKENS = 32


class ConvLayer(nn.Module):
    """Conv (``conv``), optional BatchNorm (``norm``), optional tanh-GELU; "same" padding.

    ``[B, C_in, H, W]`` -> ``[B, C_out, H / stride, W / stride]``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=bias)
        self.norm: nn.Module | None = nn.BatchNorm2d(out_ch) if norm else None
        self.act = nn.GELU(approximate="tanh") if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x) if self.norm is None else conv_norm(self.conv, self.norm, x)
        return self.act(y)


class ResBlock(nn.Module):
    """Two 3x3 ConvLayers, the second without activation (stage 0). Shape-preserving."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(ch, ch, 3)
        self.conv2 = ConvLayer(ch, ch, 3, act=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


class FusedMBConv(nn.Module):
    """3x3 ``spatial_conv`` (stride, BN, GELU) to ``in_ch * expand``, 1x1 ``point_conv`` (BN).

    ``[B, C_in, H, W]`` -> ``[B, C_out, H / stride, W / stride]``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.spatial_conv = ConvLayer(in_ch, hidden, 3, stride)
        self.point_conv = ConvLayer(hidden, out_ch, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.point_conv(self.spatial_conv(x))


class MBConv(nn.Module):
    """Inverted bottleneck with norm only at the end ("fewer norm"):

    1x1 ``inverted_conv`` (bias, GELU) to ``in_ch * expand``, depthwise 3x3 ``depth_conv``
    (stride, bias, GELU), 1x1 ``point_conv`` (no bias, BN).
    ``[B, C_in, H, W]`` -> ``[B, C_out, H / stride, W / stride]``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.inverted_conv = ConvLayer(in_ch, hidden, 1, bias=True, norm=False)
        self.depth_conv = ConvLayer(hidden, hidden, 3, stride, groups=hidden, bias=True, norm=False)
        self.point_conv = ConvLayer(hidden, out_ch, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


def linear_attention(q: Tensor, k: Tensor, v: Tensor, eps: float = ATTENTION_EPS) -> Tensor:
    """ReLU linear attention per head, in float32.

    Args:
        q, k, v: ``[B, heads, N, d]`` (q and k already through ReLU).

    Returns ``[B, heads, N, d]`` with ``out_i = sum_j v_j (k_j . q_i) / (sum_j k_j . q_i + eps)``,
    computed as ``q (k^T [v | 1])`` (cost linear in N) or, for ``N <= 32``, through the N x N map.
    Runs in float32 with autocast off whatever the input dtype (as TAO's): the sums over N
    positions overflow or lose the small denominators in FP16.
    """
    dtype = q.dtype
    with torch.autocast(q.device.type, enabled=False):
        q, k, v = q.float(), k.float(), v.float()
        if q.shape[2] <= QUADRATIC_MAX_TOKENS:
            att = q @ k.transpose(-1, -2)  # [B, h, N_q, N_k]
            att = att / (att.sum(dim=-1, keepdim=True) + eps)
            return (att @ v).to(dtype)
        v = F.pad(v, (0, 1), value=1.0)  # [B, h, N, d + 1]: the last column sums the weights
        out = q @ (k.transpose(-1, -2) @ v)  # [B, h, N, d + 1]
        return (out[..., :-1] / (out[..., -1:] + eps)).to(dtype)


class LiteMLA(nn.Module):
    """Multi-scale linear attention (TAO's ``LiteMLA``), ``[B, C, H, W]`` -> same shape.

    ``qkv`` (1x1, no bias) makes ``3 * C`` channels; each aggregation branch ``aggreg.{i}``
    (depthwise ``s x s`` conv, then a 1x1 conv grouped per 32-channel chunk) makes another
    ``3 * C``. The concatenation ``[B, 3 * C * (1 + branches), H, W]`` is read as heads of 96
    contiguous channels (q 32, k 32, v 32), the plain heads first: for C = 512, 32 heads.
    Their outputs (32 channels each, head order) go through ``proj`` (1x1, BN) back to C.
    """

    def __init__(
        self, ch: int, head_dim: int = HEAD_DIM, scales: Sequence[int] = AGGREGATION_SCALES
    ) -> None:
        super().__init__()
        heads = ch // head_dim
        total = 3 * heads * head_dim
        self.head_dim = head_dim
        self.qkv = ConvLayer(ch, total, 1, norm=False, act=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(total, total, s, padding=s // 2, groups=total, bias=False),
                nn.Conv2d(total, total, 1, groups=3 * heads, bias=False),
            )
            for s in scales
        )
        self.proj = ConvLayer(heads * head_dim * (1 + len(scales)), ch, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, *(branch(qkv) for branch in self.aggreg)], dim=1)
        d = self.head_dim
        # [B, heads, 3d, N] -> [B, heads, N, 3d]: per head q | k | v, contiguous channels
        qkv = qkv.reshape(B, -1, 3 * d, H * W).transpose(-1, -2)
        q, k, v = F.relu(qkv[..., :d]), F.relu(qkv[..., d : 2 * d]), qkv[..., 2 * d :]
        out = linear_attention(q, k, v)  # [B, heads, N, d]
        return self.proj(out.transpose(-1, -2).reshape(B, -1, H, W))


class ResidualBlock(nn.Module):
    """``main(x) + x`` when ``residual``, else ``main(x)`` (stride-2 and width-changing blocks).

    The key is ``main``; the identity shortcut has no parameters.
    """

    def __init__(self, main: nn.Module, residual: bool) -> None:
        super().__init__()
        self.main = main
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.main(x)
        return y + x if self.residual else y


class EfficientViTBlock(nn.Module):
    """Residual LiteMLA (``context_module``) then residual MBConv (``local_module``).

    ``[B, C, H, W]`` -> same shape.
    """

    def __init__(self, ch: int, expand: int = 6) -> None:
        super().__init__()
        self.context_module = ResidualBlock(LiteMLA(ch), residual=True)
        self.local_module = ResidualBlock(MBConv(ch, ch, 1, expand), residual=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.local_module(self.context_module(x))


class OpSequential(nn.Module):
    """Blocks in order, under the key ``op_list`` (TAO's container)."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: Tensor) -> Tensor:
        for op in self.op_list:
            x = op(x)
        return x


def _stage(index: int, in_ch: int, out_ch: int, depth: int) -> OpSequential:
    """Stages 1-4: a stride-2 block (no shortcut), then ``depth`` residual blocks."""
    if index in (1, 2):
        first: nn.Module = FusedMBConv(in_ch, out_ch, 2, 16)
        rest: list[nn.Module] = [
            ResidualBlock(FusedMBConv(out_ch, out_ch, 1, 4), True) for _ in range(depth)
        ]
    elif index == 3:
        first = MBConv(in_ch, out_ch, 2, 16)
        rest = [ResidualBlock(MBConv(out_ch, out_ch, 1, 4), True) for _ in range(depth)]
    else:
        first = MBConv(in_ch, out_ch, 2, 24)
        rest = [EfficientViTBlock(out_ch) for _ in range(depth)]
    return OpSequential([ResidualBlock(first, False), *rest])


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``[B, C, H, W]`` (channels-last permute, LN, back)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class EfficientViTL2(nn.Module):
    """EfficientViT-L2 feature extractor (TAO's ``EfficientViTLargeFPN``).

    Args:
        return_interm_indices: indices into stages 1..4 to return (TAO's [1, 2, 3] = stages 2,
            3, 4: 128/256/512 channels at strides 8/16/32). Only [1, 2, 3] has TAO's three
            output norms, so only it is accepted.
        train_backbone: False freezes every parameter and keeps all BN in eval mode.
        freeze_norm: every BN becomes FrozenBatchNorm2d (TAO's export mode: 768 detector keys).
        activation_checkpoint: recompute each stage in backward (training only).

    ``forward(x [B, 3, H, W]) -> [[B, 128, H/8, W/8], [B, 256, H/16, W/16], [B, 512, H/32, W/32]]``.
    """

    def __init__(
        self,
        return_interm_indices: Sequence[int] = (1, 2, 3),
        *,
        train_backbone: bool = True,
        freeze_norm: bool = False,
        activation_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if list(return_interm_indices) != [1, 2, 3]:
            raise ValueError(
                "efficientvit_l2 returns stages 2, 3, 4 through its three output norms: "
                f"model.return_interm_indices must be [1, 2, 3], got {list(return_interm_indices)}"
            )
        self.return_interm_indices = [1, 2, 3]
        self.activation_checkpoint = activation_checkpoint
        w = L2_WIDTHS
        stem = OpSequential(
            [ConvLayer(3, w[0], 3, 2), ResidualBlock(ResBlock(w[0]), residual=True)]
        )
        self.stages = nn.ModuleList(
            [stem, *(_stage(i, w[i - 1], w[i], L2_DEPTHS[i]) for i in range(1, 5))]
        )
        self.norm1 = ChannelLayerNorm(w[2])
        self.norm2 = ChannelLayerNorm(w[3])
        self.norm3 = ChannelLayerNorm(w[4])
        self.out_channels = list(w[2:])
        self.out_strides = list(STAGE_STRIDES[2:])
        self._init_weights()
        if freeze_norm:
            _frozen_bn(self)
        self._frozen = not train_backbone
        if self._frozen:
            for p in self.parameters():
                p.requires_grad_(False)
        self.train()

    def _init_weights(self) -> None:
        """Kaiming (fan_in) convs, zero biases, unit norms, and a zero scale on the last BN of
        every residual branch (MIT's "zero last gamma"): a fresh model's residual blocks start as
        identities, so activations keep their scale through the 30 blocks."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ResidualBlock) and m.residual:
                last = [n for n in m.main.modules() if isinstance(n, nn.BatchNorm2d)][-1]
                nn.init.zeros_(last.weight)

    def train(self, mode: bool = True) -> EfficientViTL2:
        """Set train/eval mode; a frozen backbone stays in eval mode (BN statistics fixed)."""
        super().train(mode and not getattr(self, "_frozen", False))
        return self

    def _run_stage(self, stage: nn.Module, x: Tensor) -> Tensor:
        return run_stage(stage, x, checkpointed=self.activation_checkpoint and self.training)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` (H, W multiples of 32) -> the three normalised stage outputs."""
        x = self._run_stage(self.stages[0], x)
        x = self._run_stage(self.stages[1], x)
        outs = []
        for stage, norm in zip(self.stages[2:], (self.norm1, self.norm2, self.norm3), strict=True):
            x = self._run_stage(stage, x)
            outs.append(norm(x))
        return outs
