"""Small building blocks shared by the encoder and the decoder.

``attention`` runs an ``nn.MultiheadAttention`` module's own parameters (``in_proj_weight``,
``in_proj_bias``, ``out_proj``, so the state-dict keys stay TAO's) through
``F.scaled_dot_product_attention``: one fused projection for query and key (they share an input
in every RT-DETR attention), flash/memory-efficient kernels on GPU, no averaged attention map
that nobody reads, and a graph that exports to plain ONNX MatMul/Softmax.
"""

from __future__ import annotations

import itertools

import torch.nn.functional as F
from torch import Tensor, nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str | None) -> nn.Module:
    """``relu``/``gelu``/``silu`` -> a parameter-free module; ``None`` -> Identity."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}"
        ) from None


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (``layers.{i}`` keys, as TAO's MLP)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_dim]`` -> ``[..., out_dim]``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


def attention(
    mha: nn.MultiheadAttention, query_key: Tensor, value: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Self-attention where query and key share ``query_key`` (content + position).

    Args:
        mha: a ``batch_first`` MultiheadAttention whose parameters are used.
        query_key: ``[B, L, D]``.
        value: ``[B, L, D]``.
        mask: optional bool ``[L, L]``, True where attention is NOT allowed (the
            ``nn.MultiheadAttention`` convention, as TAO's denoising mask).

    Returns:
        ``[B, L, D]``.
    """
    B, L, D = query_key.shape
    heads = mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    qk = F.linear(query_key, w[: 2 * D], None if b is None else b[: 2 * D])
    v = F.linear(value, w[2 * D :], None if b is None else b[2 * D :])
    qk = qk.view(B, L, 2, heads, D // heads).permute(2, 0, 3, 1, 4)
    v = v.view(B, L, heads, D // heads).transpose(1, 2)
    allowed = None if mask is None else ~mask
    out = F.scaled_dot_product_attention(
        qk[0], qk[1], v, attn_mask=allowed, dropout_p=mha.dropout if mha.training else 0.0
    )
    out = out.transpose(1, 2).reshape(B, L, D)
    return mha.out_proj(out)
