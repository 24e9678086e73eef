"""Small building blocks shared by the backbone, the encoder and the decoder.

``conv_norm`` runs a convolution followed by a batch norm. When the norm is a fixed per-channel
affine map (a ``FrozenBatchNorm2d``, or any batch norm in eval mode) its scale and shift are
folded into the convolution's weight and bias on the fly, so the activation is written once
instead of three times (conv, multiply, add) and, in training with a frozen backbone, backward
skips the norm too. Parameters and state-dict keys are untouched: the fold is recomputed from
them at every call (a pass over the weights, far smaller than the activations), gradients reach
the convolution's weight through it. While tracing (ONNX export) nothing is folded here: the
exporter traces the plain Conv + BatchNormalization graph and folds it itself, so exported graphs
are unchanged.

``attention`` runs an ``nn.MultiheadAttention`` module's own parameters (``in_proj_weight``,
``in_proj_bias``, ``out_proj``, so the state-dict keys stay TAO's) through
``F.scaled_dot_product_attention``: one fused projection for query and key (they share an input
in every RT-DETR attention), flash/memory-efficient kernels on GPU, no averaged attention map
that nobody reads, and a graph that exports to plain ONNX MatMul/Softmax.
"""

from __future__ import annotations

import itertools

import torch
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


def fixed_affine(norm: nn.Module) -> tuple[Tensor, Tensor] | None:
    """``(scale, shift)`` ``[C]`` if ``norm`` is a fixed per-channel affine map, else None.

    Fixed: a module with an ``affine()`` method (``FrozenBatchNorm2d``) or a batch norm
    (``BatchNorm2d``, ``SyncBatchNorm``) in eval mode with running statistics. A batch norm in
    training mode normalises with batch statistics and is not foldable.
    """
    affine = getattr(norm, "affine_terms", None)
    if callable(affine):
        return affine()
    if (
        isinstance(norm, nn.modules.batchnorm._BatchNorm)
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
    ):
        scale = (norm.running_var + norm.eps).rsqrt()
        if norm.weight is not None:
            scale = norm.weight * scale
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = norm.bias + shift
        return scale, shift
    return None


def folded_conv(conv: nn.Conv2d, norm: nn.Module) -> tuple[Tensor, Tensor] | None:
    """Weight ``[O, I, k, k]`` and bias ``[O]`` of ``norm(conv(x))`` as one convolution, or None
    when the norm is not fixed (:func:`fixed_affine`) or a tracer is recording the graph."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return None
    affine = fixed_affine(norm)
    if affine is None:
        return None
    scale, shift = affine
    weight = conv.weight * scale.to(conv.weight.dtype).view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return weight, bias.to(conv.weight.dtype)


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(conv(x))``, folded into one convolution when the norm is fixed."""
    folded = folded_conv(conv, norm)
    if folded is None:
        return norm(conv(x))
    return conv._conv_forward(x, *folded)


def pad_kernel(weight: Tensor, size: int) -> Tensor:
    """Zero-pad a square ``[O, I, k, k]`` kernel to ``size`` x ``size`` (centred)."""
    p = (size - weight.shape[-1]) // 2
    return F.pad(weight, (p, p, p, p)) if p else weight
