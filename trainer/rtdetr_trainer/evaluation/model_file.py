"""Which predictor runs a model file: a ``.pth`` checkpoint on PyTorch, an ``.onnx`` export on
onnxruntime.

Kept apart from both predictors so each imports only the base class
(:mod:`rtdetr_trainer.evaluation.predictor`) and neither imports the other: the import graph
has no cycle for the layers contract to miss.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rtdetr_spec import ExperimentSpec
from rtdetr_trainer.evaluation.predictor import Predictor, load_torch_predictor


def load_predictor(
    path: str | Path, spec: ExperimentSpec, task: str, device: torch.device
) -> Predictor:
    """A predictor for ``<task>.checkpoint``: an exported ``.onnx`` model or a checkpoint.

    The ONNX predictor (and onnxruntime) is imported only when an ONNX file is given.
    """
    if str(path).endswith(".onnx"):
        from rtdetr_trainer.evaluation.onnx_predictor import OnnxPredictor

        return OnnxPredictor(path, spec, task, device)
    return load_torch_predictor(path, spec, task, device)
