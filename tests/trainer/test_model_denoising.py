"""Contrastive denoising groups: counts, layout, noise ranges and the attention mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rtdetr_trainer.model.box_ops import box_cxcywh_to_xyxy
from rtdetr_trainer.model.denoising import contrastive_denoising_group, denoising_attn_mask


def _targets(counts: list[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in counts:
        centre = 0.3 + 0.4 * torch.rand(n, 2, generator=g)
        size = 0.1 + 0.2 * torch.rand(n, 2, generator=g)
        out.append(
            {
                "labels": torch.randint(0, 5, (n,), generator=g),
                "boxes": torch.cat([centre, size], 1),
            }
        )
    return out


EMBED = nn.Embedding(6, 8, padding_idx=5)


@pytest.mark.parametrize(
    ("counts", "groups"), [([3, 1], 33), ([1], 100), ([0, 7], 14), ([150, 2], 1), ([100], 1)]
)
def test_group_count_is_dn_number_over_max_boxes(counts, groups):
    dn = contrastive_denoising_group(_targets(counts), 5, 30, EMBED, num_denoising=100)
    assert dn is not None
    max_gt = max(counts)
    n_dn = 2 * max_gt * groups
    assert dn.meta["dn_num_group"] == groups
    assert dn.meta["dn_num_split"] == [n_dn, 30]
    assert dn.query.shape == (len(counts), n_dn, 8)
    assert dn.ref_unact.shape == (len(counts), n_dn, 4)
    assert dn.attn_mask.shape == (n_dn + 30, n_dn + 30)


def test_no_boxes_or_no_denoising_gives_none():
    assert contrastive_denoising_group(_targets([0, 0]), 5, 30, EMBED) is None
    assert contrastive_denoising_group(_targets([2]), 5, 30, EMBED, num_denoising=0) is None


def test_positive_indices_point_at_the_positive_copies():
    dn = contrastive_denoising_group(_targets([3, 1, 0]), 5, 30, EMBED, num_denoising=10)
    assert dn is not None
    # max_gt 3 -> 3 groups of [3 positives, 3 negatives].
    expected = [[0, 1, 2, 6, 7, 8, 12, 13, 14], [0, 6, 12], []]
    assert [t.tolist() for t in dn.meta["dn_positive_idx"]] == expected


def test_attention_mask_blocks_groups_and_hides_dn_from_matching_queries():
    size, groups, q = 4, 3, 5
    mask = denoising_attn_mask(size, groups, q, torch.device("cpu"))
    n_dn = size * groups
    for i in range(n_dn + q):
        for j in range(n_dn + q):
            if i >= n_dn:  # matching query: sees only matching queries
                blocked = j < n_dn
            elif j >= n_dn:  # DN query looking at a matching query: allowed
                blocked = False
            else:  # DN to DN: only inside the same group
                blocked = i // size != j // size
            assert mask[i, j].item() == blocked, (i, j)


def test_box_noise_keeps_positives_within_and_negatives_beyond_half_size():
    torch.manual_seed(0)
    targets = _targets([4, 4], seed=1)
    dn = contrastive_denoising_group(targets, 5, 10, EMBED, num_denoising=40, label_noise_ratio=0)
    assert dn is not None
    max_gt, groups = 4, 5
    noised = box_cxcywh_to_xyxy(torch.sigmoid(dn.ref_unact))
    for b, t in enumerate(targets):
        orig = box_cxcywh_to_xyxy(t["boxes"])
        half = (t["boxes"][:, 2:] * 0.5).repeat(1, 2)
        for g in range(groups):
            base = g * 2 * max_gt
            pos = (noised[b, base : base + max_gt] - orig).abs() / half
            neg = (noised[b, base + max_gt : base + 2 * max_gt] - orig).abs() / half
            assert (pos < 1 + 1e-4).all()
            # Negatives move by 1..2 half-sizes unless clipped at the image border, or unless
            # opposite corners crossed (the box then collapses to zero width/height).
            neg_boxes = noised[b, base + max_gt : base + 2 * max_gt]
            clipped = (neg_boxes <= 1e-4) | (neg_boxes >= 1 - 1e-4)
            wh = neg_boxes[:, 2:] - neg_boxes[:, :2]
            collapsed = (wh < 1e-3).any(-1, keepdim=True)
            assert ((neg > 1 - 1e-4) | clipped | collapsed).all()
            assert (neg < 2 + 1e-4).all()


def test_label_noise_flips_about_a_quarter_and_padding_is_the_zero_embedding():
    torch.manual_seed(0)
    targets = [
        {"labels": torch.zeros(50, dtype=torch.long), "boxes": torch.full((50, 4), 0.5)},
        {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)},
    ]
    embed = nn.Embedding(6, 8, padding_idx=5)
    dn = contrastive_denoising_group(targets, 5, 10, embed, num_denoising=2000)
    assert dn is not None
    # Image 0: labels flipped to a random class with p 0.25 (to another class 0.25 * 4/5).
    flipped = (dn.query[0] != embed.weight[0]).any(-1).float().mean().item()
    assert 0.15 < flipped < 0.25
    # Image 1 is all padding: the padding row is zero.
    assert (dn.query[1] == 0).all()
