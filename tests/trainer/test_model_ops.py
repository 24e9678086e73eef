"""Box ops and multi-scale deformable attention against independent references."""

from __future__ import annotations

import math

import pytest
import torch

from rtdetr_trainer.model.box_ops import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    inverse_sigmoid,
)
from rtdetr_trainer.model.ms_deform_attn import MSDeformableAttention, ms_deform_attn_core


def test_box_conversions_round_trip():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.05, 0.1]])
    xyxy = box_cxcywh_to_xyxy(boxes)
    assert torch.allclose(xyxy[0], torch.tensor([0.4, 0.3, 0.6, 0.7]))
    assert torch.allclose(box_xyxy_to_cxcywh(xyxy), boxes)


@pytest.mark.parametrize(
    ("a", "b", "iou", "giou"),
    [
        ([0, 0, 2, 2], [0, 0, 2, 2], 1.0, 1.0),
        # Disjoint unit squares 1 apart: union 2, enclosing 3 -> 0 - 1/3.
        ([0, 0, 1, 1], [2, 0, 3, 1], 0.0, -1.0 / 3.0),
        # Half overlap: inter 1, union 3, enclosing 3 -> 1/3.
        ([0, 0, 2, 1], [1, 0, 3, 1], 1.0 / 3.0, 1.0 / 3.0),
        # Nested: inter 1, union 4, enclosing 4.
        ([0, 0, 2, 2], [0, 0, 1, 1], 0.25, 0.25),
        # Diagonal corners: inter 0, union 2, enclosing 4 -> -0.5.
        ([0, 0, 1, 1], [1, 1, 2, 2], 0.0, -0.5),
    ],
)
def test_iou_and_giou_known_values(a, b, iou, giou):
    ta, tb = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    assert box_iou(ta, tb)[0].item() == pytest.approx(iou)
    assert generalized_box_iou(ta, tb).item() == pytest.approx(giou)
    assert elementwise_generalized_box_iou(ta, tb).item() == pytest.approx(giou)


def test_elementwise_giou_is_the_pairwise_diagonal():
    g = torch.Generator().manual_seed(0)
    a = box_cxcywh_to_xyxy(torch.rand(6, 4, generator=g) * 0.5 + 0.1)
    b = box_cxcywh_to_xyxy(torch.rand(6, 4, generator=g) * 0.5 + 0.1)
    assert torch.allclose(elementwise_generalized_box_iou(a, b), generalized_box_iou(a, b).diag())
    assert torch.allclose(
        elementwise_generalized_box_iou(a[:, None], b[None]), generalized_box_iou(a, b)
    )


def test_inverse_sigmoid_inverts_and_stays_finite():
    x = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0])
    y = inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(torch.sigmoid(y[1:4]), x[1:4], atol=1e-6)
    assert y[0].item() == pytest.approx(math.log(1e-5))


def _bilinear_zero_padded(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample ``img`` [D, h, w] at normalised (x, y); pixel centres at (i + 0.5) / size."""
    _, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    corners = [
        (x0, y0, (x0 + 1 - px) * (y0 + 1 - py)),
        (x0 + 1, y0, (px - x0) * (y0 + 1 - py)),
        (x0, y0 + 1, (x0 + 1 - px) * (py - y0)),
        (x0 + 1, y0 + 1, (px - x0) * (py - y0)),
    ]
    for xi, yi, weight in corners:
        if 0 <= xi < w and 0 <= yi < h:
            out += weight * img[:, yi, xi]
    return out


def _naive_msda(value, shapes, locations, weights):
    """Loop over every batch, query, head, level and point."""
    B, _, M, Dh = value.shape
    _, Q, _, _, P, _ = locations.shape
    out = torch.zeros(B, Q, M * Dh, dtype=value.dtype)
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    for b in range(B):
        for q in range(Q):
            for m in range(M):
                acc = torch.zeros(Dh, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    level = value[b, starts[lvl] : starts[lvl + 1], m]  # [h*w, Dh]
                    img = level.T.reshape(Dh, h, w)
                    for p in range(P):
                        x, y = locations[b, q, m, lvl, p].tolist()
                        acc += weights[b, q, m, lvl, p] * _bilinear_zero_padded(img, x, y)
                out[b, q, m * Dh : (m + 1) * Dh] = acc
    return out


def test_ms_deform_attn_matches_naive_loops():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (2, 2)]
    B, M, Dh, Q, P = 2, 2, 3, 3, 2
    S = sum(h * w for h, w in shapes)
    value = torch.randn(B, S, M, Dh, generator=g, dtype=torch.float64)
    # Locations partly outside [0, 1] exercise the zero padding.
    locations = torch.rand(B, Q, M, len(shapes), P, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(B, Q, M, len(shapes), P, generator=g, dtype=torch.float64)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    got = ms_deform_attn_core(value, shapes, locations, weights)
    want = _naive_msda(value, shapes, locations, weights)
    assert got.shape == (B, Q, M * Dh)
    assert torch.allclose(got, want, atol=1e-10)


def test_ms_deform_attn_module_samples_around_reference_boxes():
    """Locations are ``xy + offset / n_points * wh / 2``; checked through the core function."""
    torch.manual_seed(0)
    attn = MSDeformableAttention(d_model=16, n_levels=2, n_heads=2, n_points=3).double()
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.1)
    torch.nn.init.normal_(attn.attention_weights.weight, std=0.1)
    shapes = [(4, 5), (2, 3)]
    S = sum(h * w for h, w in shapes)
    query = torch.randn(2, 4, 16, dtype=torch.float64)
    memory = torch.randn(2, S, 16, dtype=torch.float64)
    ref = torch.rand(2, 4, 1, 4, dtype=torch.float64) * 0.5 + 0.25
    got = attn(query, ref, memory, shapes)

    value = attn.value_proj(memory).view(2, S, 2, 8)
    off = attn.sampling_offsets(query).view(2, 4, 2, 2, 3, 2)
    loc = torch.empty_like(off)
    for b, q, m, lvl, p in torch.cartesian_prod(*(torch.arange(n) for n in off.shape[:5])):
        cx, cy, w, h = ref[b, q, 0].tolist()
        loc[b, q, m, lvl, p, 0] = cx + off[b, q, m, lvl, p, 0] / 3 * w * 0.5
        loc[b, q, m, lvl, p, 1] = cy + off[b, q, m, lvl, p, 1] / 3 * h * 0.5
    wts = attn.attention_weights(query).view(2, 4, 2, 6).softmax(-1).view(2, 4, 2, 2, 3)
    want = attn.output_proj(_naive_msda(value, shapes, loc, wts))
    assert torch.allclose(got, want, atol=1e-8)


def test_ms_deform_attn_init_offsets_ring():
    attn = MSDeformableAttention(d_model=32, n_levels=3, n_heads=8, n_points=4)
    bias = attn.sampling_offsets.bias.view(8, 3, 4, 2)
    # Head 0 points along +x, head 2 along +y; point k at distance k + 1 (max-norm).
    assert torch.allclose(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert torch.allclose(bias[2, 1, 3], torch.tensor([0.0, 4.0]), atol=1e-6)
    assert (attn.attention_weights.weight == 0).all()


def test_ms_deform_attn_low_precision_runs_in_float32_on_cpu():
    shapes = [(4, 4), (2, 2)]
    value = torch.randn(1, 20, 2, 4)
    loc = torch.rand(1, 5, 2, 2, 2, 2)
    w = torch.softmax(torch.randn(1, 5, 2, 4), -1).view(1, 5, 2, 2, 2)
    ref = ms_deform_attn_core(value, shapes, loc, w)
    for dtype in (torch.bfloat16, torch.float16):
        out = ms_deform_attn_core(value.to(dtype), shapes, loc, w)
        assert out.dtype == dtype
        assert torch.allclose(out.float(), ref, atol=3e-2)
