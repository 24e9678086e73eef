"""Load ``export.checkpoint`` into the model the spec describes, strictly, for export.

Accepts TAO's Lightning-style files (``state_dict`` with ``model.model.`` keys, ``tao_model``),
ours (the same plus ``class_map``, ``spec`` and optionally ``ema_state_dict``, which is exported
when present, as evaluation uses it) and bare state dicts. Every key and shape must match the
spec's model: a checkpoint of another ``num_classes`` or backbone is refused with a message
naming both (:func:`rtdetr_trainer.model.weights.load_strict`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import sha256_file
from rtdetr_trainer.export.errors import ExportInputError
from rtdetr_trainer.model.build import build_model
from rtdetr_trainer.model.rtdetr import RTDETR
from rtdetr_trainer.model.weights import (
    CheckpointFormatError,
    CheckpointMismatchError,
    load_strict,
    read_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass
class LoadedCheckpoint:
    """The spec's model with the checkpoint's weights, in eval mode.

    Attributes:
        model: the detector (logits follow the checkpoint's class map).
        class_map: the checkpoint's ``class_map`` as stored (None for TAO checkpoints).
        path: the checkpoint file; sha256: its digest; source_format: TAO/ours/bare.
    """

    model: RTDETR
    class_map: Any
    path: Path
    sha256: str
    source_format: str


def read_export_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read the file, turning every failure into an error naming ``export.checkpoint``."""
    try:
        return read_checkpoint(path)
    except FileNotFoundError:
        raise ExportInputError(f"export.checkpoint: {path} does not exist") from None
    except (CheckpointFormatError, ValueError, OSError) as e:
        raise ExportInputError(f"export.checkpoint: {e}") from None


def load_model(
    spec: ExperimentSpec, ckpt: dict[str, Any], path: str | Path, *, height: int, width: int
) -> LoadedCheckpoint:
    """Build the spec's model for a ``height`` x ``width`` input and load ``ckpt`` strictly.

    Anchors and positional embeddings are precomputed for the export size, so they become
    constants of the graph that fit its input exactly.
    """
    num_classes = spec.dataset.num_classes
    try:
        model = build_model(spec.model, num_classes, (height, width), load_backbone_weights=False)
    except ValueError as e:
        raise ExportInputError(f"cannot build the spec's model for export: {e}") from None
    weights: dict[str, Any] = ckpt
    if isinstance(ckpt.get("ema_state_dict"), dict):
        weights = {"state_dict": ckpt["ema_state_dict"], "tao_model": "rtdetr"}
        log.info("%s: exporting the EMA weights it carries", path)
    expected = {
        "dataset.num_classes": num_classes,
        "model.backbone": spec.model.backbone,
        "model.dec_layers": spec.model.dec_layers,
        "model.hidden_dim": spec.model.hidden_dim,
    }
    try:
        fmt = load_strict(model, weights, expected=expected)
    except (CheckpointMismatchError, CheckpointFormatError) as e:
        raise ExportInputError(f"export.checkpoint: {e}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    log.info("loaded %s (%s) strictly into %s", path, fmt, spec.model.backbone)
    return LoadedCheckpoint(
        model=model,
        class_map=ckpt.get("class_map"),
        path=Path(path),
        sha256=sha256_file(path),
        source_format=fmt,
    )


def pick_device(spec: ExperimentSpec) -> torch.device:
    """``export.on_cpu`` -> CPU; else ``cuda:<export.gpu_id>`` when CUDA is present.

    Without CUDA the export runs on the CPU (the graph is the same: deformable attention is
    GridSample on every device). ``gpu_id`` left at ``??`` means GPU 0 when there is one.
    """
    cfg = spec.export
    if cfg.on_cpu or not torch.cuda.is_available():
        if not cfg.on_cpu:
            log.info("no CUDA device: exporting on the CPU")
        return torch.device("cpu")
    count = torch.cuda.device_count()
    gpu = 0 if "gpu_id" in cfg.missing_keys() else cfg.gpu_id
    if gpu >= count:
        raise ExportInputError(
            f"export.gpu_id is {gpu} but this machine has {count} CUDA device(s) "
            f"(0..{count - 1}); set export.gpu_id or export.on_cpu=true"
        )
    return torch.device("cuda", gpu)
