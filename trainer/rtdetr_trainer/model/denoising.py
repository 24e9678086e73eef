"""Contrastive denoising (DN) queries for training, as TAO/RT-DETR build them.

Each ground-truth box is copied into ``groups = num_denoising // max_gt`` groups (at least 1);
every group holds a positive copy (box jittered by less than half its size, to be reconstructed)
and a negative copy (jittered by one to two half-sizes, to be classified as background). Labels
are flipped to a random class with probability ``label_noise_ratio / 2``. Images with fewer boxes
than the batch maximum are padded with the padding class ``num_classes`` (a zero embedding).

Layout along the query axis: ``[group 0: pos(max_gt), neg(max_gt) | group 1: ... | matching]``.
The attention mask keeps groups from seeing each other and hides all DN queries from the
matching queries, so DN never leaks ground truth into the real predictions.

Index bookkeeping is computed from the Python box counts with device-side ops, so building a
group never waits on the device (no ``nonzero``, no host-to-device copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr_trainer.model.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid


class DenoisingMeta(TypedDict):
    """``dn_meta`` as TAO names it; the criterion uses it to score the DN outputs."""

    dn_positive_idx: tuple[Tensor, ...]  # per image: DN query indices of its positive copies
    dn_num_group: int
    dn_num_split: list[int]  # [num DN queries, num matching queries]


@dataclass
class DenoisingGroup:
    """Decoder inputs for the DN queries of one batch.

    Attributes:
        query: ``[B, N_dn, D]`` label embeddings (the content part of the DN queries).
        ref_unact: ``[B, N_dn, 4]`` noised boxes as logits (inverse sigmoid of cxcywh).
        attn_mask: bool ``[N_dn + Q, N_dn + Q]``, True where attention is NOT allowed.
        meta: the ``dn_meta`` dict.
    """

    query: Tensor
    ref_unact: Tensor
    attn_mask: Tensor
    meta: DenoisingMeta


def denoising_attn_mask(
    group_size: int, num_groups: int, num_queries: int, device: torch.device
) -> Tensor:
    """Block-diagonal over DN groups; matching queries cannot see any DN query.

    ``group_size`` is ``2 * max_gt``. Returns bool ``[N_dn + Q, N_dn + Q]`` (True = blocked).
    """
    n_dn = group_size * num_groups
    size = n_dn + num_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[n_dn:, :n_dn] = True
    group = torch.arange(n_dn, device=device) // group_size
    mask[:n_dn, :n_dn] = group[:, None] != group[None, :]
    return mask


def contrastive_denoising_group(
    targets: list[dict[str, Tensor]],
    num_classes: int,
    num_queries: int,
    class_embed: nn.Embedding,
    *,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
) -> DenoisingGroup | None:
    """Build the DN queries for ``targets`` (``labels`` [N], ``boxes`` [N, 4] cxcywh in [0, 1]).

    Returns None when DN is off or the batch has no ground truth at all.
    """
    if num_denoising <= 0 or not targets:
        return None
    num_gts = [int(t["labels"].shape[0]) for t in targets]
    max_gt = max(num_gts)
    if max_gt == 0:
        return None
    device = targets[0]["labels"].device
    groups = max(num_denoising // max_gt, 1)
    n_dn = 2 * max_gt * groups

    # Pad every image to max_gt slots with device-side ops only: a host-to-device copy here
    # would wait for the backbone and encoder still queued on the GPU.
    cls = torch.stack(
        [F.pad(t["labels"].to(device, torch.long), (0, max_gt - n), value=num_classes)
         for t, n in zip(targets, num_gts, strict=True)]
    )  # fmt: skip
    box = torch.stack(
        [F.pad(t["boxes"].to(device, torch.float32), (0, 0, 0, max_gt - n))
         for t, n in zip(targets, num_gts, strict=True)]
    )  # fmt: skip
    slot = torch.arange(max_gt, device=device)
    real = torch.stack([slot < n for n in num_gts])

    cls = cls.tile(1, 2 * groups)
    box = box.tile(1, 2 * groups, 1)
    real = real.tile(1, 2 * groups)
    negative = (torch.arange(n_dn, device=device) % (2 * max_gt) >= max_gt).float()
    negative = negative.view(1, n_dn, 1)

    if label_noise_ratio > 0:
        flip = torch.rand(cls.shape, device=device) < label_noise_ratio * 0.5
        new_label = torch.randint_like(cls, 0, num_classes)
        cls = torch.where(flip & real, new_label, cls)

    if box_noise_scale > 0:
        corners = box_cxcywh_to_xyxy(box)
        diff = (box[..., 2:] * 0.5).tile(1, 1, 2) * box_noise_scale
        sign = torch.randint_like(box, 0, 2) * 2.0 - 1.0
        part = torch.rand_like(box)
        part = (part + 1.0) * negative + part * (1.0 - negative)
        corners = (corners + part * sign * diff).clamp(0.0, 1.0)
        box = box_xyxy_to_cxcywh(corners)
    ref_unact = inverse_sigmoid(box)

    per_group = torch.arange(groups, device=device)[:, None] * (2 * max_gt)
    positive_idx = tuple(
        (per_group + torch.arange(n, device=device)[None]).flatten() for n in num_gts
    )
    meta: DenoisingMeta = {
        "dn_positive_idx": positive_idx,
        "dn_num_group": groups,
        "dn_num_split": [n_dn, num_queries],
    }
    return DenoisingGroup(
        query=class_embed(cls),
        ref_unact=ref_unact,
        attn_mask=denoising_attn_mask(2 * max_gt, groups, num_queries, device),
        meta=meta,
    )
