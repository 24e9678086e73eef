"""The RT-DETR detector: backbone -> hybrid encoder -> decoder, with TAO's state-dict layout.

``RTDETR().state_dict()`` keys are TAO's without the ``model.model.`` prefix that TAO's
Lightning wrappers add (see :mod:`rtdetr_trainer.model.weights`). ``ExportWrapper`` is the view
that ONNX export traces: images in, ``(pred_logits, pred_boxes)`` out, as TAO's exported graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rtdetr_trainer.model.backbone import ResNet
from rtdetr_trainer.model.decoder import RTDETRTransformer
from rtdetr_trainer.model.hybrid_encoder import HybridEncoder


class RTDETR(nn.Module):
    """RT-DETR with attributes ``backbone``, ``encoder``, ``decoder`` (TAO's names).

    ``forward(images, targets=None)``:
        images: ``[B, 3, H, W]`` float RGB in [0, 1], no mean/std normalisation; H and W
            multiples of 32.
        targets (training): per image ``labels`` LongTensor ``[N]`` (logit indices 0..C-1)
            and ``boxes`` FloatTensor ``[N, 4]`` normalised cxcywh. Needed for denoising.

    Returns ``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]`` (normalised cxcywh,
    in [0, 1]); in training also ``aux_outputs``, ``enc_aux_outputs``, ``dn_aux_outputs``,
    ``dn_meta`` for :class:`rtdetr_trainer.model.criterion.Criterion`.
    """

    def __init__(self, backbone: ResNet, encoder: HybridEncoder, decoder: RTDETRTransformer):
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder

    @property
    def num_classes(self) -> int:
        return self.decoder.num_classes

    def forward(
        self, images: Tensor, targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Any]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        feats = self.backbone(images)
        return self.decoder(self.encoder(feats), targets)

    def export_module(self) -> ExportWrapper:
        """An eval-mode view returning ``(pred_logits, pred_boxes)`` for tracing/ONNX."""
        return ExportWrapper(self)


class ExportWrapper(nn.Module):
    """``forward(images [B, 3, H, W]) -> (pred_logits [B, Q, C], pred_boxes [B, Q, 4])``.

    Holds the model (no copy) and puts it in eval mode; H, W should equal the model's
    ``eval_spatial_size`` so the cached anchors and position embeddings become constants.
    """

    def __init__(self, model: RTDETR) -> None:
        super().__init__()
        self.model = model.eval()

    def train(self, mode: bool = True) -> ExportWrapper:
        """The export view is always in eval mode."""
        super().train(False)
        return self

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(images.device.type, enabled=False):
            out = self.model(images)
        return out["pred_logits"], out["pred_boxes"]
