"""RT-DETR's training loss: varifocal classification + L1 + GIoU on Hungarian-matched pairs.

Terms (TAO's ``SetCriterion``), each multiplied by its spec weight:

* ``loss_vfl``: BCE-with-logits against ``IoU * one_hot`` with weight
  ``alpha * sigmoid(p)^gamma * (1 - one_hot) + IoU * one_hot``, reduced
  ``mean over queries, sum over batch and classes, * Q / num_boxes``.
* ``loss_bbox``: L1 of matched cxcywh boxes / num_boxes; ``loss_giou``: sum(1 - GIoU) / num_boxes.

Suffixes: ``_aux_{i}`` for decoder layer i (all but the last, re-matched), ``_enc_0`` for the
encoder's top-k proposals (re-matched; TAO calls it the last ``_aux``), ``_dn_{i}`` for the
denoising outputs of layer i (fixed assignment, divided by ``num_boxes * groups``). The training
loss is the plain sum of the returned dict.

``num_boxes`` stays a device tensor (averaged over DDP ranks, at least 1): no host sync besides
the matcher's one transfer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr_trainer.model.box_ops import (
    box_cxcywh_to_xyxy,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
)
from rtdetr_trainer.model.matcher import HungarianMatcher, Indices

LOSS_TYPES = ("vfl", "boxes")


@dataclass(frozen=True)
class LossWeights:
    """Spec ``vfl_loss_coef`` / ``bbox_loss_coef`` / ``giou_loss_coef``."""

    vfl: float = 1.0
    bbox: float = 5.0
    giou: float = 2.0


def total_loss(losses: Mapping[str, Tensor]) -> Tensor:
    """The training objective: the sum of the weighted terms."""
    return torch.stack([v.float() for v in losses.values()]).sum()


class Criterion(nn.Module):
    """Set criterion; ``forward(outputs, targets) -> {name: weighted loss}``.

    Args:
        num_classes: logit columns C.
        matcher: the Hungarian matcher.
        weights: loss weights.
        alpha, gamma: varifocal parameters (spec ``alpha`` 0.75, ``gamma`` 2).
        losses: spec ``loss_types`` (subset of ``vfl``, ``boxes``).
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weights: LossWeights = LossWeights(),
        *,
        alpha: float = 0.75,
        gamma: float = 2.0,
        losses: Sequence[str] = LOSS_TYPES,
    ) -> None:
        super().__init__()
        unknown = [name for name in losses if name not in LOSS_TYPES]
        if unknown:
            raise ValueError(f"model.loss_types {unknown} unknown; supported: {list(LOSS_TYPES)}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = weights
        self.alpha, self.gamma = alpha, gamma
        self.losses = tuple(losses)

    def num_boxes(self, targets: Sequence[Mapping[str, Tensor]], device: torch.device) -> Tensor:
        """Mean number of target boxes per DDP rank, clamped to >= 1, as a device scalar."""
        n = torch.tensor(float(sum(int(t["labels"].shape[0]) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(n)
            n = n / dist.get_world_size()
        return n.clamp(min=1.0)

    def _terms(
        self,
        out: Mapping[str, Tensor],
        targets: Sequence[Mapping[str, Tensor]],
        indices: Indices,
        num_boxes: Tensor,
    ) -> dict[str, Tensor]:
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        batch_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)])
        query_idx = torch.cat([q for q, _ in indices])
        tgt_labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices, strict=True)])
        tgt_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices, strict=True)])
        src_boxes = boxes[batch_idx, query_idx].float()
        tgt_boxes = tgt_boxes.float()
        src_xyxy, tgt_xyxy = box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes)
        terms: dict[str, Tensor] = {}
        if "vfl" in self.losses:
            logits = logits.float()
            iou = elementwise_box_iou(src_xyxy, tgt_xyxy)[0].detach()
            one_hot = torch.zeros_like(logits)
            one_hot[batch_idx, query_idx, tgt_labels] = 1.0
            score = torch.zeros_like(logits)
            score[batch_idx, query_idx, tgt_labels] = iou
            weight = self.alpha * logits.detach().sigmoid().pow(self.gamma) * (1 - one_hot) + score
            bce = F.binary_cross_entropy_with_logits(logits, score, weight=weight, reduction="none")
            vfl = bce.mean(1).sum() * logits.shape[1] / num_boxes
            terms["loss_vfl"] = self.weights.vfl * vfl
        if "boxes" in self.losses:
            l1 = F.l1_loss(src_boxes, tgt_boxes, reduction="none").sum() / num_boxes
            giou = (1 - elementwise_generalized_box_iou(src_xyxy, tgt_xyxy)).sum() / num_boxes
            terms["loss_bbox"] = self.weights.bbox * l1
            terms["loss_giou"] = self.weights.giou * giou
        return terms

    @staticmethod
    def denoising_indices(
        dn_meta: Mapping[str, Any], targets: Sequence[Mapping[str, Tensor]]
    ) -> Indices:
        """Fixed DN assignment: positive copy ``g`` of box ``j`` is matched to box ``j``."""
        groups = int(dn_meta["dn_num_group"])
        result: Indices = []
        for b, t in enumerate(targets):
            device = t["labels"].device
            n = int(t["labels"].shape[0])
            gt = torch.arange(n, dtype=torch.int64, device=device).tile(groups)
            result.append((dn_meta["dn_positive_idx"][b].to(device), gt))
        return result

    def forward(
        self, outputs: Mapping[str, Any], targets: Sequence[Mapping[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Weighted loss terms for the final, auxiliary, encoder and denoising outputs."""
        device = outputs["pred_logits"].device
        num_boxes = self.num_boxes(targets, device)
        named: list[tuple[str, Mapping[str, Tensor]]] = [("", outputs)]
        named += [(f"_aux_{i}", o) for i, o in enumerate(outputs.get("aux_outputs", []))]
        named += [(f"_enc_{i}", o) for i, o in enumerate(outputs.get("enc_aux_outputs", []))]
        matches = self.matcher.match_many([o for _, o in named], targets)
        losses: dict[str, Tensor] = {}
        for (suffix, out), indices in zip(named, matches, strict=True):
            for k, v in self._terms(out, targets, indices, num_boxes).items():
                losses[k + suffix] = v
        dn_outputs = outputs.get("dn_aux_outputs")
        if dn_outputs:
            meta = outputs["dn_meta"]
            indices = self.denoising_indices(meta, targets)
            dn_boxes = num_boxes * meta["dn_num_group"]
            for i, out in enumerate(dn_outputs):
                for k, v in self._terms(out, targets, indices, dn_boxes).items():
                    losses[f"{k}_dn_{i}"] = v
        return losses
