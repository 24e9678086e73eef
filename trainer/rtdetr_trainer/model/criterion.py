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
from rtdetr_trainer.model.matcher import HungarianMatcher

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
        count = float(sum(int(t["labels"].shape[0]) for t in targets))
        n = torch.full((), count, device=device)  # a fill, not a host-to-device copy
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(n)
            n = n / dist.get_world_size()
        return n.clamp(min=1.0)

    def _stacked_terms(
        self,
        logits: Tensor,
        boxes: Tensor,
        match: Tensor,
        labels: Tensor,
        tgt_boxes: Tensor,
        num_boxes: Tensor,
    ) -> dict[str, Tensor]:
        """Loss terms of N same-shaped outputs at once.

        Args:
            logits: ``[N, B, Q, C]``; boxes: ``[N, B, Q, 4]`` cxcywh.
            match: int64 ``[>=3, K]`` rows (output, image, query, ...) of the matched pairs.
            labels: ``[K]`` and tgt_boxes ``[K, 4]``: the target of each matched pair.
            num_boxes: device scalar normaliser.

        Returns:
            name -> ``[N]`` weighted term per output.
        """
        n, b, q = match[0], match[1], match[2]
        src = boxes[n, b, q].float()
        tgt = tgt_boxes.float()
        src_xyxy, tgt_xyxy = box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)
        terms: dict[str, Tensor] = {}
        if "vfl" in self.losses:
            logits = logits.float()
            iou = elementwise_box_iou(src_xyxy, tgt_xyxy)[0].detach()
            one_hot = torch.zeros_like(logits)
            one_hot[n, b, q, labels] = 1.0
            score = torch.zeros_like(logits)
            score[n, b, q, labels] = iou
            weight = self.alpha * logits.detach().sigmoid().pow(self.gamma) * (1 - one_hot) + score
            bce = F.binary_cross_entropy_with_logits(logits, score, weight=weight, reduction="none")
            # TAO per output: mean over queries, sum over images and classes, * Q / num_boxes.
            vfl = bce.mean(2).sum((1, 2)) * logits.shape[2] / num_boxes
            terms["loss_vfl"] = self.weights.vfl * vfl
        if "boxes" in self.losses:
            zeros = torch.zeros(logits.shape[0], device=src.device)
            l1 = zeros.index_add(0, n, (src - tgt).abs().sum(-1))
            giou = zeros.index_add(0, n, 1 - elementwise_generalized_box_iou(src_xyxy, tgt_xyxy))
            terms["loss_bbox"] = self.weights.bbox * l1 / num_boxes
            terms["loss_giou"] = self.weights.giou * giou / num_boxes
        return terms

    def _denoising_match(
        self, dn_meta: Mapping[str, Any], sizes: Sequence[int], layers: int, device: torch.device
    ) -> Tensor:
        """Fixed DN pairs for ``layers`` outputs as ``[5, K]`` rows like the matcher's."""
        groups = int(dn_meta["dn_num_group"])
        rows = []
        offset = 0
        for b, n in enumerate(sizes):
            query = dn_meta["dn_positive_idx"][b].to(device)
            local = torch.arange(n, device=device).tile(groups)
            rows.append(torch.stack([torch.full_like(local, b), query, local, local + offset]))
            offset += n
        one = torch.cat(rows, 1)  # [4, K1]: image, query, target in image, target in batch
        out = torch.arange(layers, device=device).repeat_interleave(one.shape[1])
        return torch.cat([out[None], one.repeat(1, layers)], 0)

    def forward(
        self, outputs: Mapping[str, Any], targets: Sequence[Mapping[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Weighted loss terms for the final, auxiliary, encoder and denoising outputs.

        Outputs of one shape are stacked and scored together (a handful of kernels instead of
        one set per decoder layer); the numbers are those of scoring each output separately.
        """
        device = outputs["pred_logits"].device
        num_boxes = self.num_boxes(targets, device)
        sizes = [int(t["labels"].shape[0]) for t in targets]
        all_labels = torch.cat([t["labels"] for t in targets]).to(device)
        all_boxes = torch.cat([t["boxes"] for t in targets]).to(device)
        named: list[tuple[str, Mapping[str, Tensor]]] = [("", outputs)]
        named += [(f"_aux_{i}", o) for i, o in enumerate(outputs.get("aux_outputs", []))]
        named += [(f"_enc_{i}", o) for i, o in enumerate(outputs.get("enc_aux_outputs", []))]
        match = self.matcher.match_flat([o for _, o in named], targets)

        losses: dict[str, Tensor] = {}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, o) in enumerate(named):
            groups.setdefault(tuple(o["pred_logits"].shape), []).append(i)
        for members in groups.values():
            if len(members) == len(named):
                sub = match
            else:  # outputs of different shapes: renumber this group's pairs 0..len-1
                remap = torch.full((len(named),), -1, dtype=torch.int64, device=device)
                remap[members] = torch.arange(len(members), device=device)
                new_out = remap[match[0]]
                sub = torch.cat([new_out[None], match[1:]])[:, new_out >= 0]
            terms = self._stacked_terms(
                torch.stack([named[i][1]["pred_logits"] for i in members]),
                torch.stack([named[i][1]["pred_boxes"] for i in members]),
                sub, all_labels[sub[4]], all_boxes[sub[4]], num_boxes,
            )  # fmt: skip
            for j, i in enumerate(members):
                for name, values in terms.items():
                    losses[name + named[i][0]] = values[j]

        dn_outputs = outputs.get("dn_aux_outputs")
        if dn_outputs:
            meta = outputs["dn_meta"]
            dn_match = self._denoising_match(meta, sizes, len(dn_outputs), device)
            terms = self._stacked_terms(
                torch.stack([o["pred_logits"] for o in dn_outputs]),
                torch.stack([o["pred_boxes"] for o in dn_outputs]),
                dn_match, all_labels[dn_match[4]], all_boxes[dn_match[4]],
                num_boxes * meta["dn_num_group"],
            )  # fmt: skip
            for i in range(len(dn_outputs)):
                for name, values in terms.items():
                    losses[f"{name}_dn_{i}"] = values[i]
        return losses
