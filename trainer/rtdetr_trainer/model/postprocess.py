"""Model outputs -> per-image detections in original-image pixels (TAO's postprocess, no NMS).

Scores are ``sigmoid(logits)``; the top ``num_select`` of the flattened ``Q * C`` scores are
kept, so one query may yield several (class, score) detections, as in TAO. Selection runs on the
logits (same order as the sigmoid, no saturation ties). The result equals
``rtdetr_serving.preprocess.decode_detections`` (the numpy decoder that ONNX/Triton use), which a
test checks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from rtdetr_trainer.model.box_ops import box_cxcywh_to_xyxy


class PostProcessor(nn.Module):
    """``forward(outputs, orig_sizes [B, 2] as (width, height)) -> list of dicts``.

    Each dict has ``scores`` ``[K]`` (descending), ``labels`` ``[K]`` int64 (logit column) and
    ``boxes`` ``[K, 4]`` xyxy in original pixels clipped to the image. ``K = min(num_select,
    Q * C)``, or ``min(num_select, Q * (C - 1))`` with a ``background_index`` column, which is
    never selected.
    """

    def __init__(self, num_select: int = 300, background_index: int | None = None) -> None:
        super().__init__()
        if num_select < 1:
            raise ValueError(f"num_select must be >= 1, got {num_select}")
        self.num_select = num_select
        self.background_index = background_index

    @torch.no_grad()
    def forward(self, outputs: Mapping[str, Tensor], orig_sizes: Tensor) -> list[dict[str, Tensor]]:
        logits, boxes = outputs["pred_logits"].float(), outputs["pred_boxes"].float()
        B, Q, C = logits.shape
        if orig_sizes.shape != (B, 2):
            raise ValueError(
                f"orig_sizes must be [{B}, 2] (width, height), got {tuple(orig_sizes.shape)}"
            )
        k = min(self.num_select, Q * C)
        if self.background_index is not None:
            if not 0 <= self.background_index < C:
                raise ValueError(f"background_index {self.background_index} outside 0..{C - 1}")
            logits = logits.clone()
            logits[..., self.background_index] = -torch.inf
            k = min(k, Q * (C - 1))
        top_logits, top = torch.topk(logits.reshape(B, Q * C), k, dim=1)
        query = torch.div(top, C, rounding_mode="floor")
        labels = top % C
        xyxy = box_cxcywh_to_xyxy(boxes).gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        size = orig_sizes.to(device=logits.device, dtype=torch.float32)
        scale = size.repeat(1, 2)[:, None, :]  # [B, 1, 4] = (w, h, w, h)
        xyxy = torch.minimum((xyxy * scale).clamp(min=0.0), scale)
        scores = top_logits.sigmoid()
        return [{"scores": scores[b], "labels": labels[b], "boxes": xyxy[b]} for b in range(B)]
