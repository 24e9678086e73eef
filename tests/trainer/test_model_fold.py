"""Performance rewrites that must not change a number: conv+norm folding, the RepVGG merge,
channels_last, and the heads-first deformable attention (values and gradients)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rtdetr_trainer.model import build_model, layers
from rtdetr_trainer.model.backbone import FrozenBatchNorm2d
from rtdetr_trainer.model.hybrid_encoder import RepVggBlock
from rtdetr_trainer.model.layers import conv_norm, fixed_affine
from rtdetr_trainer.model.ms_deform_attn import MSDeformableAttention, ms_deform_attn_core
from tests.trainer._model_fixtures import one_thread, small_config

__all__ = ["one_thread"]


@pytest.fixture(scope="module")
def r18() -> nn.Module:
    torch.manual_seed(0)
    return build_model(small_config(), 7, (128, 128))


def _random_bn(bn: nn.modules.batchnorm._BatchNorm | FrozenBatchNorm2d, g: torch.Generator) -> None:
    with torch.no_grad():
        n = bn.running_mean.shape[0]
        bn.running_mean.copy_(torch.randn(n, generator=g, dtype=bn.running_mean.dtype))
        bn.running_var.copy_(torch.rand(n, generator=g, dtype=bn.running_var.dtype) + 0.5)
        bn.weight.copy_(torch.randn(n, generator=g, dtype=bn.running_mean.dtype))
        bn.bias.copy_(torch.randn(n, generator=g, dtype=bn.running_mean.dtype))


@pytest.mark.parametrize("norm_kind", ["bn_eval", "frozen"])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_norm_fold_equals_conv_then_norm(norm_kind: str, bias: bool) -> None:
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, 2, 1, bias=bias).double()
    norm = (nn.BatchNorm2d(7) if norm_kind == "bn_eval" else FrozenBatchNorm2d(7)).double()
    _random_bn(norm, g)
    norm.eval()
    x = torch.randn(2, 5, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    assert fixed_affine(norm) is not None
    want = norm(conv(x))
    got = conv_norm(conv, norm, x)
    assert torch.allclose(got, want, atol=1e-12)
    # Gradients reach the input, the conv weight and (for a trainable eval BN) the BN affine.
    params = [x, conv.weight] + ([norm.weight] if norm_kind == "bn_eval" else [])
    gw = torch.autograd.grad(want.square().sum(), params)
    gg = torch.autograd.grad(got.square().sum(), params)
    for a, b in zip(gw, gg, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_training_batch_norm_is_not_folded() -> None:
    conv, norm = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
    assert fixed_affine(norm.train()) is None
    x = torch.randn(4, 3, 5, 5)
    out = conv_norm(conv, norm, x)
    # Batch statistics were used (and the running statistics updated), as an unfolded BN does.
    assert torch.allclose(out.mean((0, 2, 3)), norm.bias, atol=1e-5)
    assert int(norm.num_batches_tracked) == 1


def test_repvgg_merge_in_eval_equals_two_branches() -> None:
    g = torch.Generator().manual_seed(1)
    block = RepVggBlock(6, "silu").double()
    for m in (block.conv1.norm, block.conv2.norm):
        _random_bn(m, g)
    block.eval()
    x = torch.randn(2, 6, 8, 8, generator=g, dtype=torch.float64)
    want = block.act(block.conv1(x) + block.conv2(x))
    assert torch.allclose(block(x), want, atol=1e-12)


def test_folded_model_equals_unfolded_model(r18, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole eval forward with every fold disabled gives the same detections."""
    g = torch.Generator().manual_seed(2)
    model = copy.deepcopy(r18).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d):
            _random_bn(m, g)
    x = torch.rand(1, 3, 128, 128, generator=g)
    with torch.no_grad():
        folded = model(x)
        monkeypatch.setattr(layers, "fixed_affine", lambda norm: None)
        plain = model(x)
    assert torch.allclose(folded["pred_logits"], plain["pred_logits"], atol=1e-4)
    assert torch.allclose(folded["pred_boxes"], plain["pred_boxes"], atol=1e-5)


def test_model_runs_channels_last_whatever_the_input(r18) -> None:
    conv = r18.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a = r18.eval()(x)
        b = r18(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(a["pred_logits"], b["pred_logits"])


def test_heads_first_attention_gradients_match_the_reference() -> None:
    """The module's fused value projection and level split give the gradients of the plain
    formulation (Linear, [B, S, M, Dh] value, ms_deform_attn_core)."""
    torch.manual_seed(0)
    attn = MSDeformableAttention(d_model=16, n_levels=2, n_heads=2, n_points=3).double()
    nn.init.normal_(attn.sampling_offsets.weight, std=0.1)
    nn.init.normal_(attn.attention_weights.weight, std=0.1)
    shapes = [(4, 5), (2, 3)]
    S = sum(h * w for h, w in shapes)
    query = torch.randn(2, 4, 16, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(2, S, 16, dtype=torch.float64, requires_grad=True)
    ref = torch.rand(2, 4, 1, 4, dtype=torch.float64) * 0.5 + 0.25
    mask = torch.zeros(2, S, dtype=torch.bool)
    mask[1, -3:] = True

    def reference() -> torch.Tensor:
        value = attn.value_proj(memory).masked_fill(mask[..., None], 0.0).view(2, S, 2, 8)
        off = attn.sampling_offsets(query).view(2, 4, 2, 2, 3, 2)
        loc = ref[:, :, None, :, None, :2] + off / 3 * ref[:, :, None, :, None, 2:] * 0.5
        # The module normalises the weights in float32, whatever the model's dtype.
        w = attn.attention_weights(query).view(2, 4, 2, 6).float().softmax(-1).double()
        w = w.view(2, 4, 2, 2, 3)
        return attn.output_proj(ms_deform_attn_core(value, shapes, loc, w))

    params = [query, memory, attn.value_proj.weight, attn.value_proj.bias]
    want = reference()
    got = attn(query, ref, memory, shapes, mask)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    gw = torch.autograd.grad((want * torch.arange(want.numel()).view_as(want)).sum(), params)
    gg = torch.autograd.grad((got * torch.arange(got.numel()).view_as(got)).sum(), params)
    for a, b in zip(gw, gg, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), (a - b).abs().max()
