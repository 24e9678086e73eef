"""RT-DETR's hybrid encoder: per-level projection, AIFI on the coarsest level, then CCFM fusion.

Module names follow TAO (``encoder.input_proj.{i}.{0,1}``, ``encoder.encoder.{i}.layers.{j}``,
``lateral_convs``, ``fpn_blocks``, ``downsample_convs``, ``pan_blocks``) so TAO checkpoints load
strictly. The 2-D sin-cos position embedding is not a parameter or buffer (TAO's state dict has
none); it is cached per feature size and device, so eval at ``eval_spatial_size`` and ONNX export
see a constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr_trainer.model.layers import activation, attention, conv_norm, folded_conv, pad_kernel


class ConvNormLayer(nn.Module):
    """Conv (no bias) + BN + optional activation; keys ``conv``, ``norm``."""

    def __init__(
        self, ch_in: int, ch_out: int, kernel: int, stride: int, act: str | None = None
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, kernel, stride, (kernel - 1) // 2, bias=False)
        self.norm = nn.BatchNorm2d(ch_out)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(conv_norm(self.conv, self.norm, x))


class RepVggBlock(nn.Module):
    """3x3 ConvNorm + 1x1 ConvNorm summed, then the activation.

    Both branches stay separate modules (TAO's keys). When both norms are fixed (eval mode) the
    two branches are one 3x3 convolution (RepVGG re-parameterisation), computed from the
    parameters at each call: one convolution and no sum instead of two and an add.
    """

    def __init__(self, ch: int, act: str) -> None:
        super().__init__()
        self.conv1 = ConvNormLayer(ch, ch, 3, 1)
        self.conv2 = ConvNormLayer(ch, ch, 1, 1)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        a = folded_conv(self.conv1.conv, self.conv1.norm)
        b = folded_conv(self.conv2.conv, self.conv2.norm)
        if a is None or b is None:
            return self.act(self.conv1(x) + self.conv2(x))
        k = self.conv1.conv.weight.shape[-1]
        weight = a[0] + pad_kernel(b[0], k)
        return self.act(self.conv1.conv._conv_forward(x, weight, a[1] + b[1]))


class CSPRepLayer(nn.Module):
    """``conv3(bottlenecks(conv1(x)) + conv2(x))``; conv3 is Identity when expansion is 1."""

    def __init__(
        self, ch_in: int, ch_out: int, num_blocks: int, expansion: float, act: str
    ) -> None:
        super().__init__()
        hidden = int(ch_out * expansion)
        self.conv1 = ConvNormLayer(ch_in, hidden, 1, 1, act)
        self.conv2 = ConvNormLayer(ch_in, hidden, 1, 1, act)
        self.bottlenecks = nn.Sequential(*(RepVggBlock(hidden, act) for _ in range(num_blocks)))
        self.conv3: nn.Module = (
            ConvNormLayer(hidden, ch_out, 1, 1, act) if hidden != ch_out else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class AIFILayer(nn.Module):
    """Post-norm transformer encoder layer (TAO's ``TransformerEncoderLayer``)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, act: str) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = activation(act)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        """``src`` ``[B, HW, D]``, ``pos`` ``[1, HW, D]`` -> ``[B, HW, D]``."""
        src = self.norm1(src + self.dropout1(attention(self.self_attn, src + pos, src)))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class TransformerEncoder(nn.Module):
    """A stack of AIFI layers (key ``layers.{j}``)."""

    def __init__(self, num_layers: int, *layer_args: object) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AIFILayer(*layer_args) for _ in range(num_layers))  # type: ignore[arg-type]

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


def sincos_position_embedding(w: int, h: int, dim: int, temperature: float) -> Tensor:
    """TAO's 2-D sin-cos embedding for a ``w`` x ``h`` grid -> ``[1, w*h, dim]`` float32.

    Rows run w-major (index ``i*h + j`` holds grid point ``(i, j)``) and channels are
    ``[w.sin, w.cos, h.sin, h.cos]``, exactly as TAO/RT-DETR build it; it is added to the
    h-major flattened feature map, which is what every RT-DETR checkpoint was trained with.
    """
    if dim % 4:
        raise ValueError(f"hidden_dim {dim} must be divisible by 4 for the sin-cos embedding")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    gw, gh = torch.meshgrid(
        torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij"
    )
    out_w = gw.reshape(-1, 1) * omega
    out_h = gh.reshape(-1, 1) * omega
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]


class HybridEncoder(nn.Module):
    """Projects backbone features to ``hidden_dim``, runs AIFI on ``use_encoder_idx``, fuses.

    ``forward(feats: list of [B, C_i, H_i, W_i]) -> list of [B, hidden_dim, H_i, W_i]`` (same
    strides). Input sizes must be multiples of the largest stride (32) for the 2x fusion.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        feat_strides: Sequence[int],
        *,
        hidden_dim: int = 256,
        nhead: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        enc_act: str = "gelu",
        use_encoder_idx: Sequence[int] = (2,),
        num_encoder_layers: int = 1,
        pe_temperature: float = 10000.0,
        expansion: float = 1.0,
        depth_mult: float = 1.0,
        act: str = "silu",
        eval_spatial_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        n = len(in_channels)
        if len(feat_strides) != n:
            raise ValueError(f"{n} input levels but {len(feat_strides)} feat_strides")
        self.in_channels = list(in_channels)
        self.feat_strides = list(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        self.pe_temperature = float(pe_temperature)
        self.eval_spatial_size = eval_spatial_size
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, hidden_dim, 1, bias=False), nn.BatchNorm2d(hidden_dim))
            for c in in_channels
        )
        self.encoder = nn.ModuleList(
            TransformerEncoder(
                num_encoder_layers, hidden_dim, nhead, dim_feedforward, dropout, enc_act
            )
            for _ in self.use_encoder_idx
        )
        blocks = round(3 * depth_mult)
        self.lateral_convs = nn.ModuleList(
            ConvNormLayer(hidden_dim, hidden_dim, 1, 1, act) for _ in range(n - 1)
        )
        self.fpn_blocks = nn.ModuleList(
            CSPRepLayer(2 * hidden_dim, hidden_dim, blocks, expansion, act) for _ in range(n - 1)
        )
        self.downsample_convs = nn.ModuleList(
            ConvNormLayer(hidden_dim, hidden_dim, 3, 2, act) for _ in range(n - 1)
        )
        self.pan_blocks = nn.ModuleList(
            CSPRepLayer(2 * hidden_dim, hidden_dim, blocks, expansion, act) for _ in range(n - 1)
        )
        self._pos_cache: dict[tuple[int, int, torch.device], Tensor] = {}
        if eval_spatial_size is not None:
            for idx in self.use_encoder_idx:
                s = self.feat_strides[idx]
                self._pos_embed(eval_spatial_size[0] // s, eval_spatial_size[1] // s, None)

    def _pos_embed(self, h: int, w: int, device: torch.device | None) -> Tensor:
        """Cached ``[1, h*w, hidden_dim]`` float32 embedding for an ``h`` x ``w`` map."""
        key = (h, w, torch.device("cpu") if device is None else device)
        pos = self._pos_cache.get(key)
        if pos is None:
            pos = sincos_position_embedding(w, h, self.hidden_dim, self.pe_temperature)
            self._pos_cache[key] = pos = pos.to(key[2])
        return pos

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        if len(feats) != len(self.in_channels):
            raise ValueError(
                f"encoder expects {len(self.in_channels)} feature maps, got {len(feats)}"
            )
        proj = [conv_norm(p[0], p[1], f) for p, f in zip(self.input_proj, feats, strict=True)]
        for enc, idx in zip(self.encoder, self.use_encoder_idx, strict=True):
            x = proj[idx]
            B, D, h, w = x.shape
            src = x.flatten(2).transpose(1, 2)
            pos = self._pos_embed(int(h), int(w), src.device).to(src.dtype)
            memory = enc(src, pos)
            # [B, HW, D] -> [B, D, h, w] as a view: already channels_last-strided, no copy.
            proj[idx] = memory.transpose(1, 2).reshape(B, D, h, w)

        n = len(proj)
        # Top-down (FPN): coarse -> fine. inner[0] is always the current finest fused map.
        inner = [proj[-1]]
        for k, idx in enumerate(range(n - 1, 0, -1)):
            high = self.lateral_convs[k](inner[0])
            inner[0] = high
            up = F.interpolate(high, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[k](torch.cat([up, proj[idx - 1]], dim=1)))
        # Bottom-up (PAN): fine -> coarse.
        outs = [inner[0]]
        for k in range(n - 1):
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](torch.cat([down, inner[k + 1]], dim=1)))
        return outs
