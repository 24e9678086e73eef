"""Predictors: something that turns preprocessed batches into detections, whatever runs it.

``rtdetr evaluate``/``inference`` and training validation only talk to :class:`Predictor`:

    predict(batch [B, 3, H, W] float32 in [0, 1], orig_sizes [B, 2] (w, h)) -> per image
        {"scores" [K], "labels" [K] (logit index), "boxes" [K, 4] xyxy in original pixels}

Decoding is :func:`rtdetr_serving.preprocess.decode_detections`, the same function serving uses,
so a PyTorch checkpoint, an exported ONNX file and the Triton deployment score identically.
:class:`TorchPredictor` runs a checkpoint; :class:`~rtdetr_trainer.evaluation.onnx_predictor.
OnnxPredictor` an exported file; :func:`rtdetr_trainer.evaluation.model_file.load_predictor`
picks one for a path. Subclasses only implement :meth:`forward`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rtdetr_serving.preprocess import decode_detections
from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import ClassMap
from rtdetr_trainer.errors import CheckpointError

log = logging.getLogger(__name__)

Detections = dict[str, np.ndarray]


class Predictor(ABC):
    """Detector behind a batch interface.

    Attributes:
        input_size: (height, width) the batches must have.
        class_map: logit index -> category/name, if the model file records one.
        num_select: detections kept per image before any threshold (TAO's ``num_select``).
        background_index: a logit column that is not a class (exports for DeepStream).
    """

    input_size: tuple[int, int]
    class_map: ClassMap | None = None
    num_select: int = 300
    background_index: int | None = None

    @abstractmethod
    def forward(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs: pred_logits [B, Q, C], pred_boxes [B, Q, 4] (normalised cxcywh)."""

    def decode(
        self, logits: np.ndarray, boxes: np.ndarray, orig_sizes: np.ndarray
    ) -> list[Detections]:
        return decode_detections(
            logits,
            boxes,
            np.asarray(orig_sizes, dtype=np.float32),
            num_select=self.num_select,
            background_index=self.background_index,
        )

    def predict(self, batch: np.ndarray | torch.Tensor, orig_sizes: np.ndarray) -> list[Detections]:
        return self.decode(*self.forward(batch), orig_sizes)


class TorchPredictor(Predictor):
    """A PyTorch RT-DETR in eval mode (optionally under autocast)."""

    def __init__(
        self,
        model: nn.Module,
        input_size: tuple[int, int],
        *,
        device: torch.device,
        class_map: ClassMap | None = None,
        num_select: int = 300,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.input_size = input_size
        self.class_map = class_map
        self.num_select = num_select
        self.autocast_dtype = autocast_dtype

    @torch.no_grad()
    def outputs(self, batch: np.ndarray | torch.Tensor) -> dict[str, Any]:
        x = torch.as_tensor(batch).to(self.device, non_blocking=True)
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"batch is {tuple(x.shape[-2:])}, the model expects {self.input_size}")
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            return self.model(x)

    def forward(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = self.outputs(batch)
        return (
            out["pred_logits"].float().cpu().numpy(),
            out["pred_boxes"].float().cpu().numpy(),
        )


def eval_input_size(spec: ExperimentSpec, task: str) -> tuple[int, int]:
    """(height, width): ``<task>.input_height/width`` if set, else ``eval_spatial_size``."""
    h, w = spec.dataset.augmentation.eval_spatial_size
    section = getattr(spec, task)
    return (section.input_height or h, section.input_width or w)


def checkpoint_class_map(ckpt: dict[str, Any]) -> ClassMap | None:
    raw = ckpt.get("class_map")
    return ClassMap.model_validate(raw) if raw else None


def load_torch_predictor(
    path: str | Path, spec: ExperimentSpec, task: str, device: torch.device
) -> TorchPredictor:
    """Build the spec's model and load ``path`` into it strictly (EMA weights when present)."""
    from rtdetr_trainer.model.build import build_model
    from rtdetr_trainer.model.weights import load_strict, read_checkpoint

    try:
        ckpt = read_checkpoint(path)
    except FileNotFoundError:
        raise CheckpointError(f"{task}.checkpoint: {path} does not exist") from None
    except ValueError as e:
        raise CheckpointError(f"{task}.checkpoint: {e}") from None
    class_map = checkpoint_class_map(ckpt)
    num_classes = spec.dataset.num_classes
    if class_map is not None and class_map.num_classes != num_classes:
        raise CheckpointError(
            f"{path} was trained with num_classes {class_map.num_classes} "
            f"({', '.join(n or '-' for n in class_map.names_by_index())}) but "
            f"dataset.num_classes is {num_classes}; set dataset.num_classes={class_map.num_classes}"
        )
    size = eval_input_size(spec, task)
    model = build_model(spec.model, num_classes, size, load_backbone_weights=False)
    weights = ckpt
    if isinstance(ckpt.get("ema_state_dict"), dict):
        weights = {"state_dict": ckpt["ema_state_dict"], "tao_model": "rtdetr"}
        log.info("%s: using the EMA weights it carries", path)
    expected = {"dataset.num_classes": num_classes, "model.backbone": spec.model.backbone}
    try:
        fmt = load_strict(model, weights, expected=expected)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    log.info("loaded %s (%s) strictly", path, fmt)
    return TorchPredictor(
        model, size, device=device, class_map=class_map, num_select=spec.model.num_select
    )
