"""Hungarian matching between predictions and ground truth (TAO's Deformable-DETR matcher).

Cost = ``cost_class * focal_class_cost + cost_bbox * L1(cxcywh) - cost_giou * GIoU`` with the
focal terms' alpha 0.25 and gamma 2 fixed, as TAO. The assignment itself is scipy's
``linear_sum_assignment`` on the host.

Unlike TAO, which builds one ``[B*Q, sum(N)]`` matrix (mostly cross-image pairs it throws away)
and transfers it per decoder layer, :meth:`HungarianMatcher.match_flat` computes the per-image
blocks of every output at once as ``[outputs, B, Q, max_N]`` on the device and transfers them
in one copy; the resulting indices go back to the device in one copy too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from rtdetr_trainer.model.box_ops import box_cxcywh_to_xyxy, elementwise_generalized_box_iou

Indices = list[tuple[Tensor, Tensor]]


class MatchingError(RuntimeError):
    """The cost matrix is not finite: predictions diverged (NaN) or a target box is empty."""


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets, per image.

    Args:
        cost_class: weight of the focal classification cost (spec ``class_cost``, 2).
        cost_bbox: weight of the L1 box cost (``bbox_cost``, 5).
        cost_giou: weight of the negative GIoU cost (``giou_cost``, 2).
    """

    alpha = 0.25
    gamma = 2.0

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("class_cost, bbox_cost and giou_cost cannot all be 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou

    @torch.no_grad()
    def cost_matrix(
        self, logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor
    ) -> Tensor:
        """Per-image costs.

        Args:
            logits: ``[..., B, Q, C]``; boxes: ``[..., B, Q, 4]`` cxcywh.
            tgt_labels: ``[B, T]`` (padded); tgt_boxes: ``[B, T, 4]`` cxcywh (padded).

        Returns:
            ``[..., B, Q, T]`` float32; padded columns hold garbage and must be ignored.
        """
        prob = logits.float().sigmoid()
        neg = (1 - self.alpha) * prob.pow(self.gamma) * -(1 - prob + 1e-8).log()
        pos = self.alpha * (1 - prob).pow(self.gamma) * -(prob + 1e-8).log()
        index = tgt_labels.unsqueeze(-2).expand(*prob.shape[:-1], tgt_labels.shape[-1])
        cost_class = (pos - neg).gather(-1, index)
        out_boxes = boxes.float().unsqueeze(-2)  # [..., B, Q, 1, 4]
        tgt = tgt_boxes.float().unsqueeze(-3)  # [B, 1, T, 4]
        cost_bbox = (out_boxes - tgt).abs().sum(-1)
        giou = elementwise_generalized_box_iou(
            box_cxcywh_to_xyxy(out_boxes), box_cxcywh_to_xyxy(tgt)
        )
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class - self.cost_giou * giou

    def _assign(
        self, outputs: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]
    ) -> np.ndarray:
        """Host-side assignment: int64 ``[5, K]`` rows (output, image, query, target in image,
        target in batch), ordered by output, then image, then query."""
        device = outputs[0]["pred_logits"].device
        sizes = [int(t["labels"].shape[0]) for t in targets]
        B, T = len(sizes), max(sizes, default=0)
        if T == 0:
            return np.zeros((5, 0), dtype=np.int64)
        labels = torch.zeros(B, T, dtype=torch.int64, device=device)
        tgt_boxes = torch.full((B, T, 4), 0.5, device=device)
        for b, t in enumerate(targets):
            labels[b, : sizes[b]] = t["labels"]
            tgt_boxes[b, : sizes[b]] = t["boxes"]

        groups: dict[tuple[int, ...], list[int]] = {}
        for i, o in enumerate(outputs):
            groups.setdefault(tuple(o["pred_logits"].shape), []).append(i)
        host: dict[int, np.ndarray] = {}
        for members in groups.values():
            logits = torch.stack([outputs[i]["pred_logits"] for i in members])
            boxes = torch.stack([outputs[i]["pred_boxes"] for i in members])
            cost = self.cost_matrix(logits, boxes, labels, tgt_boxes).cpu().numpy()
            for k, i in enumerate(members):
                host[i] = cost[k]

        offsets = np.cumsum([0, *sizes])
        parts: list[np.ndarray] = []
        for i in range(len(outputs)):
            for b in range(B):
                c = host[i][b, :, : sizes[b]]
                if not np.isfinite(c).all():
                    raise MatchingError(
                        f"matching cost for output {i}, image {b} of the batch is not finite: "
                        "the predictions contain NaN/inf (training diverged) or a target box "
                        "has zero area"
                    )
                q, t = linear_sum_assignment(c)
                n = len(q)
                parts.append(np.stack([np.full(n, i), np.full(n, b), q, t, t + offsets[b]]))
        return np.concatenate(parts, axis=1).astype(np.int64)

    @torch.no_grad()
    def match_flat(
        self, outputs: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]
    ) -> Tensor:
        """All assignments of several outputs as one int64 ``[5, K]`` device tensor.

        Rows: output index, image index, query index, target index within its image, target
        index in the concatenation of all images' targets. One device-to-host copy of the
        costs, one host-to-device copy of the result.
        """
        if not outputs:
            raise ValueError("match_flat needs at least one output")
        device = outputs[0]["pred_logits"].device
        return torch.from_numpy(self._assign(outputs, targets)).to(device)

    @torch.no_grad()
    def match_many(
        self, outputs: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]
    ) -> list[Indices]:
        """Per output, per image ``(query_idx, target_idx)`` int64 tensors on the outputs'
        device, ``len == min(Q, N_image)``, query indices ascending."""
        if not outputs:
            return []
        device = outputs[0]["pred_logits"].device
        flat = self._assign(outputs, targets)
        keys = flat[0] * len(targets) + flat[1]
        counts = np.bincount(keys, minlength=len(outputs) * len(targets)).tolist()
        pairs = torch.from_numpy(flat[2:4]).to(device).split(counts, dim=1)
        result: list[Indices] = []
        for i in range(len(outputs)):
            row = pairs[i * len(targets) : (i + 1) * len(targets)]
            result.append([(p[0], p[1]) for p in row])
        return result

    def forward(
        self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]]
    ) -> Indices:
        """Match one output (``pred_logits`` ``[B, Q, C]``, ``pred_boxes`` ``[B, Q, 4]``)."""
        return self.match_many([outputs], targets)[0]
