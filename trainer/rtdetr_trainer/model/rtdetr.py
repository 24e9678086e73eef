"""The RT-DETR detector: backbone -> hybrid encoder -> decoder, with TAO's state-dict layout.

``RTDETR().state_dict()`` keys are TAO's without the ``model.model.`` prefix that TAO's
Lightning wrappers add (see :mod:`rtdetr_trainer.model.weights`). ``ExportWrapper`` is the view
that ONNX export traces: images in, ``(pred_logits, pred_boxes)`` out, as TAO's exported graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rtdetr_trainer.model.backbone import ResNet
from rtdetr_trainer.model.decoder import RTDETRTransformer
from rtdetr_trainer.model.efficientvit import EfficientViTL2
from rtdetr_trainer.model.hybrid_encoder import HybridEncoder


class TargetError(ValueError):
    """A training target that cannot be right; the message names the image and the value."""


def validate_targets(targets: Sequence[Mapping[str, Tensor]], num_classes: int) -> None:
    """Check ``labels`` ``[N]`` in 0..C-1 and ``boxes`` ``[N, 4]`` normalised cxcywh, w, h > 0.

    Reads values, so call it where targets are still on the CPU (the collate function): on a
    GPU it would wait for the device. :meth:`RTDETR.forward` calls it for CPU targets.
    A category id equal to ``num_classes`` (ids 1..7 with ``num_classes: 7``) fails here
    instead of indexing past the logits.
    """
    for i, t in enumerate(targets):
        if "labels" not in t or "boxes" not in t:
            raise TargetError(f"target {i} needs 'labels' and 'boxes', has {sorted(t)}")
        labels, boxes = t["labels"], t["boxes"]
        if labels.ndim != 1 or labels.dtype.is_floating_point:
            raise TargetError(f"target {i}: labels must be an integer [N] tensor, got "
                              f"{labels.dtype} {tuple(labels.shape)}")  # fmt: skip
        if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != labels.shape[0]:
            raise TargetError(f"target {i}: boxes must be [{labels.shape[0]}, 4], got "
                              f"{tuple(boxes.shape)}")  # fmt: skip
        if labels.numel() == 0:
            continue
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise TargetError(
                f"target {i}: label {int(labels[bad][0])} outside 0..{num_classes - 1} "
                f"(dataset.num_classes={num_classes}; category ids are logit indices)"
            )
        wrong = ~torch.isfinite(boxes).all(1) | (boxes[:, 2:] <= 0).any(1)
        wrong |= ((boxes < -1e-4) | (boxes > 1 + 1e-4)).any(1)
        if wrong.any():
            raise TargetError(
                f"target {i}: box {boxes[wrong][0].tolist()} is not a normalised cxcywh box "
                "with positive size inside [0, 1]"
            )


class RTDETR(nn.Module):
    """RT-DETR with attributes ``backbone``, ``encoder``, ``decoder`` (TAO's names).

    ``forward(images, targets=None)``:
        images: ``[B, 3, H, W]`` float RGB in [0, 1], no mean/std normalisation; H and W
            multiples of 32. Any memory format; the model runs channels_last (its convolution
            weights are stored so, the input is converted: one copy unless already NHWC).
        targets (training): per image ``labels`` LongTensor ``[N]`` (logit indices 0..C-1)
            and ``boxes`` FloatTensor ``[N, 4]`` normalised cxcywh. Needed for denoising.

    Returns ``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]`` (normalised cxcywh,
    in [0, 1]); in training also ``aux_outputs``, ``enc_aux_outputs``, ``dn_aux_outputs``,
    ``dn_meta`` for :class:`rtdetr_trainer.model.criterion.Criterion`.
    """

    def __init__(
        self, backbone: ResNet | EfficientViTL2, encoder: HybridEncoder, decoder: RTDETRTransformer
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        # Convolution weights channels_last (NHWC strides; same values, same state-dict keys):
        # oneDNN's bf16/AMX kernels on CPU and tensor-core kernels on GPU work in NHWC, and NCHW
        # costs a layout conversion per convolution (see docs/benchmarks.md).
        self.to(memory_format=torch.channels_last)

    @property
    def num_classes(self) -> int:
        return self.decoder.num_classes

    def forward(
        self, images: Tensor, targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Any]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        stride = self.backbone.out_strides[-1]
        if images.shape[2] % stride or images.shape[3] % stride:
            raise ValueError(
                f"image height and width must be multiples of {stride}, got "
                f"{tuple(images.shape[2:])}"
            )
        if targets is not None and self.training and targets and targets[0]["labels"].is_cpu:
            validate_targets(targets, self.num_classes)
        images = images.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(images)
        return self.decoder(self.encoder(feats), targets)

    def freeze(self, paths: Sequence[str]) -> list[str]:
        """``train.freeze``: stop gradients for modules named like ``backbone`` or
        ``encoder.input_proj.0`` (TAO's paths under ``model.model``). Unlike TAO, which skips
        unknown names with a warning, an unknown path raises ValueError naming it.

        Returns the parameter names that were frozen.
        """
        frozen: list[str] = []
        for path in paths:
            try:
                module = self.get_submodule(path)
            except AttributeError:
                top = ", ".join(name for name, _ in self.named_children())
                raise ValueError(
                    f"train.freeze: no module {path!r} in the model (top level: {top})"
                ) from None
            for name, p in module.named_parameters(prefix=path):
                p.requires_grad_(False)
                frozen.append(name)
        return frozen

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
