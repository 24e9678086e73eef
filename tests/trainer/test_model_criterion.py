"""Criterion: VFL/L1/GIoU values computed by hand, naming, denoising normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from rtdetr_trainer.model.criterion import Criterion, LossWeights, total_loss
from rtdetr_trainer.model.matcher import HungarianMatcher


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _vfl_by_hand(logits: list[list[float]], matched: dict[tuple[int, int], float]) -> float:
    """Sum over queries and classes of the weighted BCE (alpha 0.75, gamma 2)."""
    total = 0.0
    for q, row in enumerate(logits):
        for c, x in enumerate(row):
            p = _sig(x)
            t = matched.get((q, c), 0.0)
            one_hot = 1.0 if (q, c) in matched else 0.0
            w = 0.75 * p**2 * (1 - one_hot) + t
            total += -w * (t * math.log(p) + (1 - t) * math.log(1 - p))
    return total


LOGITS = [[0.3, 1.2], [-0.7, -2.0]]
# Query 0 overlaps the target: inter 0.15 * 0.2 = 0.03, union 0.05 -> IoU 0.6, GIoU 0.6.
PRED = [[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05]]
TARGET = {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.55, 0.5, 0.2, 0.2]])}


def _outputs(logits=LOGITS, boxes=PRED) -> dict[str, torch.Tensor]:
    return {
        "pred_logits": torch.tensor([logits], dtype=torch.float32),
        "pred_boxes": torch.tensor([boxes], dtype=torch.float32),
    }


def test_single_output_terms_match_hand_computation():
    crit = Criterion(2, HungarianMatcher())
    losses = crit(_outputs(), [TARGET])
    assert set(losses) == {"loss_vfl", "loss_bbox", "loss_giou"}
    want_vfl = _vfl_by_hand(LOGITS, {(0, 1): 0.6})
    assert losses["loss_vfl"].item() == pytest.approx(want_vfl, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(5 * 0.05, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(2 * (1 - 0.6), rel=1e-5)


def test_weights_alpha_gamma_and_num_boxes_scale_the_terms():
    crit = Criterion(2, HungarianMatcher(), LossWeights(vfl=0.5, bbox=1.0, giou=3.0), alpha=0.5)
    second = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.1, 0.1, 0.05, 0.05]])}
    # Two images, one box each: num_boxes 2; image 1's query 1 matches its box exactly.
    out = {
        "pred_logits": torch.tensor([LOGITS, LOGITS]),
        "pred_boxes": torch.tensor([PRED, PRED]),
    }
    losses = crit(out, [TARGET, second])

    def vfl(matched):
        total = 0.0
        for q, row in enumerate(LOGITS):
            for c, x in enumerate(row):
                p, t = _sig(x), matched.get((q, c), 0.0)
                w = 0.5 * p**2 * (0.0 if (q, c) in matched else 1.0) + t
                total += -w * (t * math.log(p) + (1 - t) * math.log(1 - p))
        return total

    want = 0.5 * (vfl({(0, 1): 0.6}) + vfl({(1, 0): 1.0})) / 2
    assert losses["loss_vfl"].item() == pytest.approx(want, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(1.0 * 0.05 / 2, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(3.0 * 0.4 / 2, rel=1e-5)


def test_aux_encoder_and_denoising_terms_are_named_and_normalised():
    crit = Criterion(2, HungarianMatcher())
    base = _outputs()
    # DN layout for one box, 2 groups: [pos, neg, pos, neg]; positives at 0 and 2.
    dn_boxes = [
        [0.55, 0.5, 0.2, 0.2],
        [0.2, 0.2, 0.1, 0.1],
        [0.5, 0.5, 0.2, 0.2],
        [0.9, 0.9, 0.1, 0.1],
    ]
    dn = {
        "pred_logits": torch.zeros(1, 4, 2),
        "pred_boxes": torch.tensor([dn_boxes]),
    }
    outputs = {
        **base,
        "aux_outputs": [_outputs(), _outputs()],
        "enc_aux_outputs": [_outputs()],
        "dn_aux_outputs": [dn],
        "dn_meta": {
            "dn_positive_idx": (torch.tensor([0, 2]),),
            "dn_num_group": 2,
            "dn_num_split": [4, 2],
        },
    }
    losses = crit(outputs, [TARGET])
    names = {"loss_vfl", "loss_bbox", "loss_giou"}
    expected = set()
    for suffix in ("", "_aux_0", "_aux_1", "_enc_0", "_dn_0"):
        expected |= {n + suffix for n in names}
    assert set(losses) == expected
    for suffix in ("_aux_0", "_aux_1", "_enc_0"):
        assert torch.equal(losses["loss_vfl" + suffix], losses["loss_vfl"])
    # Positives: an exact copy (L1 0) and the 0.05-shifted box; divided by num_boxes * groups.
    assert losses["loss_bbox_dn_0"].item() == pytest.approx(5 * 0.05 / 2, rel=1e-5)
    assert losses["loss_giou_dn_0"].item() == pytest.approx(2 * 0.4 / 2, rel=1e-5)
    vfl = sum(
        -w * (t * math.log(0.5) + (1 - t) * math.log(0.5))
        for w, t in [(1.0, 1.0), (0.6, 0.6)]  # matched entries: weight = target = IoU
    ) + sum(0.75 * 0.25 * math.log(2) for _ in range(8 - 2))
    assert losses["loss_vfl_dn_0"].item() == pytest.approx(vfl * 4 / 4 / 2, rel=1e-5)
    assert total_loss(losses).item() == pytest.approx(
        sum(v.item() for v in losses.values()), rel=1e-6
    )


def test_no_boxes_gives_zero_box_losses_and_negative_only_vfl():
    crit = Criterion(2, HungarianMatcher())
    empty = {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    out = _outputs()
    out["pred_logits"].requires_grad_(True)
    losses = crit(out, [empty])
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0
    assert losses["loss_vfl"].item() == pytest.approx(_vfl_by_hand(LOGITS, {}), rel=1e-5)
    total_loss(losses).backward()
    assert torch.isfinite(out["pred_logits"].grad).all()


def test_unknown_loss_type_is_rejected():
    with pytest.raises(ValueError, match="focal"):
        Criterion(2, HungarianMatcher(), losses=("vfl", "focal"))
