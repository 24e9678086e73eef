"""RT-DETR (TAO-compatible) in plain PyTorch: model, loss, matcher, postprocess, weights.

Importing this package imports torch; ``rtdetr_trainer`` itself stays torch-free.
"""

from rtdetr_trainer.model.build import (
    BACKBONE_DEPTHS,
    build_criterion,
    build_model,
    build_postprocessor,
)
from rtdetr_trainer.model.criterion import Criterion, LossWeights, total_loss
from rtdetr_trainer.model.matcher import HungarianMatcher, MatchingError
from rtdetr_trainer.model.postprocess import PostProcessor
from rtdetr_trainer.model.rtdetr import RTDETR, ExportWrapper, TargetError, validate_targets

__all__ = [
    "BACKBONE_DEPTHS",
    "RTDETR",
    "Criterion",
    "ExportWrapper",
    "HungarianMatcher",
    "LossWeights",
    "MatchingError",
    "PostProcessor",
    "TargetError",
    "build_criterion",
    "build_model",
    "build_postprocessor",
    "total_loss",
    "validate_targets",
]
