"""Hungarian matcher: exact cost, optimality against brute force, empty targets, batching."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rtdetr_trainer.model.matcher import HungarianMatcher, MatchingError


def _focal_cost(p: float) -> float:
    """Focal positive-minus-negative cost with alpha 0.25, gamma 2, written out."""
    pos = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8)
    neg = 0.75 * p**2 * -math.log(1 - p + 1e-8)
    return pos - neg


def _giou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (hull - union) / hull


def _cost(logits, boxes, labels, tgt_boxes, q, t) -> float:
    p = 1 / (1 + math.exp(-logits[q][labels[t]]))
    l1 = sum(abs(x - y) for x, y in zip(boxes[q], tgt_boxes[t], strict=True))
    return 2 * _focal_cost(p) + 5 * l1 - 2 * _giou(boxes[q], tgt_boxes[t])


def _case(Q: int, T: int, C: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, Q, C, generator=g, dtype=torch.float64)
    boxes = torch.cat(
        [
            0.2 + 0.6 * torch.rand(1, Q, 2, generator=g),
            0.1 + 0.3 * torch.rand(1, Q, 2, generator=g),
        ],
        -1,
    )
    labels = torch.randint(0, C, (T,), generator=g)
    tgt = torch.cat(
        [0.2 + 0.6 * torch.rand(T, 2, generator=g), 0.1 + 0.3 * torch.rand(T, 2, generator=g)], -1
    )
    return logits, boxes.double(), labels, tgt.double()


def test_cost_matrix_matches_the_formula_written_out():
    logits, boxes, labels, tgt = _case(4, 3)
    cost = HungarianMatcher().cost_matrix(logits, boxes, labels[None], tgt[None])[0]
    for q in range(4):
        for t in range(3):
            want = _cost(logits[0].tolist(), boxes[0].tolist(), labels.tolist(), tgt.tolist(), q, t)
            assert cost[q, t].item() == pytest.approx(want, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_assignment_is_optimal_against_brute_force(seed):
    Q, T = 5, 3
    logits, boxes, labels, tgt = _case(Q, T, seed=seed)
    outputs = {"pred_logits": logits, "pred_boxes": boxes}
    ((rows, cols),) = HungarianMatcher()(outputs, [{"labels": labels, "boxes": tgt}])
    assert len(rows) == T and sorted(cols.tolist()) == list(range(T))
    L, B, Tl, Tb = logits[0].tolist(), boxes[0].tolist(), labels.tolist(), tgt.tolist()
    got = sum(_cost(L, B, Tl, Tb, q, t) for q, t in zip(rows.tolist(), cols.tolist(), strict=True))
    best = min(
        sum(_cost(L, B, Tl, Tb, q, t) for t, q in enumerate(perm))
        for perm in itertools.permutations(range(Q), T)
    )
    assert got == pytest.approx(best, abs=1e-6)


def test_images_without_boxes_and_batches_without_boxes():
    logits, boxes, labels, tgt = _case(6, 2)
    outputs = {"pred_logits": logits.repeat(2, 1, 1), "pred_boxes": boxes.repeat(2, 1, 1)}
    targets = [
        {"labels": labels[:0], "boxes": tgt[:0]},
        {"labels": labels, "boxes": tgt},
    ]
    first, second = HungarianMatcher()(outputs, targets)
    assert len(first[0]) == 0 and len(first[1]) == 0
    assert len(second[0]) == 2
    none = HungarianMatcher()(outputs, [targets[0], targets[0]])
    assert all(len(q) == 0 and q.dtype == torch.int64 for q, _ in none)


def test_match_many_equals_matching_one_by_one():
    g = torch.Generator().manual_seed(3)
    outs = [
        {
            "pred_logits": torch.randn(2, 8, 4, generator=g),
            "pred_boxes": torch.rand(2, 8, 4, generator=g) * 0.4 + 0.3,
        }
        for _ in range(3)
    ]
    outs.append(
        {
            "pred_logits": torch.randn(2, 5, 4, generator=g),
            "pred_boxes": torch.rand(2, 5, 4, generator=g) * 0.4 + 0.3,
        }
    )
    targets = [
        {"labels": torch.tensor([0, 3, 1]), "boxes": torch.rand(3, 4, generator=g) * 0.4 + 0.3},
        {"labels": torch.tensor([2]), "boxes": torch.rand(1, 4, generator=g) * 0.4 + 0.3},
    ]
    matcher = HungarianMatcher()
    together = matcher.match_many(outs, targets)
    for out, got in zip(outs, together, strict=True):
        for (q1, t1), (q2, t2) in zip(matcher(out, targets), got, strict=True):
            assert q1.tolist() == q2.tolist() and t1.tolist() == t2.tolist()


def test_non_finite_predictions_fail_loudly():
    logits, boxes, labels, tgt = _case(4, 2)
    boxes[0, 1, 0] = float("nan")
    with pytest.raises(MatchingError, match="output 0, image 0"):
        HungarianMatcher()(
            {"pred_logits": logits, "pred_boxes": boxes}, [{"labels": labels, "boxes": tgt}]
        )
