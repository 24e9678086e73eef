"""Multi-scale deformable attention (Zhu et al. 2021) in plain PyTorch.

TAO runs a CUDA extension in training and a TensorRT plugin in its export; this implementation
uses one ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``) per feature level
over ``batch * heads`` maps, so it runs on any device, differentiates through autograd and
exports to standard ONNX (GridSample, opset >= 16) with no custom domain. The bilinear sampling
convention (pixel centres at ``(i + 0.5) / size``, zeros outside) is the CUDA kernel's.

Parameter names (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``)
and the initialisation are TAO's ``MSDeformAttn``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _sampling_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """float32 for bf16 (8-bit mantissa is too coarse for sampling coordinates) and for any
    half type on CPU (grid_sample has no reduced-precision CPU kernel); else the value dtype."""
    if dtype == torch.bfloat16 or (dtype == torch.float16 and device.type == "cpu"):
        return torch.float32
    return dtype


def ms_deform_attn_core(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Sample every level at the given locations and take the attention-weighted sum.

    Args:
        value: ``[B, S, M, Dh]``, ``S = sum(h_l * w_l)``, levels concatenated h-major.
        spatial_shapes: ``[(h_l, w_l)]`` for the L levels (Python ints: static for export).
        sampling_locations: ``[B, Q, M, L, P, 2]`` normalised (x, y), (0, 0) top-left corner.
        attention_weights: ``[B, Q, M, L, P]``, softmax-normalised over ``L * P``.

    Returns:
        ``[B, Q, M * Dh]`` in the dtype of ``value``.
    """
    B, S, M, Dh = value.shape
    heads_first = value.permute(0, 2, 3, 1).reshape(B * M, Dh, S)
    return ms_deform_attn_heads_first(heads_first, spatial_shapes, sampling_locations,
                                      attention_weights)  # fmt: skip


def ms_deform_attn_heads_first(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """:func:`ms_deform_attn_core` on a value already laid out as ``[B * M, Dh, S]``.

    That is the layout ``grid_sample`` reads (channels ``Dh`` of one head's maps), so
    :class:`MSDeformableAttention` projects straight into it and no permuted copy of the whole
    memory is made, in forward or in backward. Levels are taken with ``split`` (whose backward
    is one concatenation) rather than slicing (whose backward fills a zero tensor of the whole
    memory per level).

    Args:
        value: ``[B * M, Dh, S]``; the other arguments as :func:`ms_deform_attn_core`.

    Returns:
        ``[B, Q, M * Dh]`` in the dtype of ``value``.
    """
    B, Q, M, L, P, _ = sampling_locations.shape
    BM, Dh, _ = value.shape
    out_dtype = value.dtype
    dtype = _sampling_dtype(value.dtype, value.device)
    value = value.to(dtype)
    # [B, Q, M, L, P, 2] -> [L, B*M, Q, P, 2] in grid_sample's [-1, 1] convention: one copy.
    grids = (2.0 * sampling_locations.to(dtype) - 1.0).permute(3, 0, 2, 1, 4, 5)
    grids = grids.reshape(L, BM, Q, P, 2)
    levels = value.split([h * w for h, w in spatial_shapes], dim=-1)
    sampled = [
        # [B*M, Dh, h, w] sampled at [B*M, Q, P] points -> [B*M, Dh, Q, P]
        F.grid_sample(
            v.unflatten(-1, (h, w)), grids[level], mode="bilinear", padding_mode="zeros",
            align_corners=False,
        )
        for level, (v, (h, w)) in enumerate(zip(levels, spatial_shapes, strict=True))
    ]  # fmt: skip
    # [B*M, Dh, Q, L*P] (level-major, like the weights below)
    samples = torch.cat(sampled, dim=-1)
    weights = attention_weights.to(dtype).permute(0, 2, 1, 3, 4).reshape(BM, 1, Q, L * P)
    out = (samples * weights).sum(-1)  # [B*M, Dh, Q]
    return out.view(B, M * Dh, Q).transpose(1, 2).to(out_dtype)


class MSDeformableAttention(nn.Module):
    """Deformable cross-attention from queries to a multi-level memory.

    Args:
        d_model: feature width (256).
        n_levels: feature levels (3).
        n_heads: heads (8).
        n_points: sampling points per head and level (4).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = (
            d_model,
            n_levels,
            n_heads,
            n_points,
        )
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start on a ring of 8 directions, point ``k`` at distance ``k + 1``."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from ``query`` to ``memory`` around the reference points.

        Args:
            query: ``[B, Q, D]`` (content + position).
            reference_points: ``[B, Q, 1 or L, 4]`` boxes (cx, cy, w, h) in [0, 1]: samples at
                ``xy + offset / n_points * wh * 0.5``; or ``[B, Q, 1 or L, 2]`` points: samples
                at ``xy + offset / (w_l, h_l)``.
            memory: ``[B, S, D]`` flattened levels.
            spatial_shapes: ``[(h_l, w_l)]``.
            memory_mask: optional bool ``[B, S]``, True for padding (zeroed values).

        Returns:
            ``[B, Q, D]``.
        """
        B, Q, _ = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        # value_proj straight into grid_sample's layout: [D, D] @ [B, D, S] -> [B, D, S], i.e.
        # [B * M, Dh, S] as a view (the transposed memory is read by the GEMM, not copied).
        w, b = self.value_proj.weight, self.value_proj.bias
        value = torch.matmul(w, memory.transpose(1, 2))
        if b is not None:
            value = value + b.to(value.dtype)[:, None]
        if memory_mask is not None:
            value = value.masked_fill(memory_mask[:, None, :], 0.0)
        value = value.reshape(B * M, self.d_model // M, memory.shape[1])
        offsets = self.sampling_offsets(query).view(B, Q, M, L, P, 2)
        weights = self.attention_weights(query).view(B, Q, M, L * P)
        weights = weights.float().softmax(-1).view(B, Q, M, L, P)
        ref = reference_points[:, :, None, :, None, :]
        if reference_points.shape[-1] == 4:
            locations = ref[..., :2] + offsets / P * ref[..., 2:] * 0.5
        elif reference_points.shape[-1] == 2:
            wh = torch.tensor([[w, h] for h, w in spatial_shapes], device=query.device)
            locations = ref + offsets / wh.to(offsets.dtype)[None, None, None, :, None, :]
        else:
            raise ValueError(
                f"reference_points must end in 2 or 4 values, got {tuple(reference_points.shape)}"
            )
        out = ms_deform_attn_heads_first(value, spatial_shapes, locations, weights)
        return self.output_proj(out)
