"""State-dict layout of checkpoints: TAO's keys, strict loading, pretrained/fine-tune loading.

TAO stores the detector under ``state_dict`` with the prefix ``model.model.`` (its Lightning
module wraps ``RTDETRModel`` which wraps ``RTDETR``) and marks the file ``"tao_model": "rtdetr"``.
Our checkpoints use the same layout, so either loads in the other. The rest of a checkpoint file
(epoch, optimizer, ...) belongs to the training engine.

* :func:`load_strict` (evaluate/inference/export): every key and shape must match, or a
  :class:`CheckpointMismatchError` says what differs and what the checkpoint appears to be.
* :func:`load_pretrained` (``train.pretrained_model_path``): TAO, original RT-DETR (ResNet-vd
  backbone: only encoder/decoder load) or ours; shape mismatches (another ``num_classes``) keep
  their fresh init and are logged; unknown keys are dropped and counted.
* :func:`load_backbone_weights` (``model.pretrained_backbone_path``): torchvision/timm ImageNet
  ResNet, TAO/MIT EfficientViT-L2, in any key layout.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from rtdetr_trainer.model.safe_load import UnsafeCheckpointError, safe_torch_load
from rtdetr_trainer.model.weights_inspect import (
    ArchitectureInfo,
    describe_mismatch,
    infer_architecture,
    strip_prefixes,
)

__all__ = [
    "TAO_PREFIX",
    "ArchitectureInfo",
    "BackboneLoadReport",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "PretrainedReport",
    "UnsafeCheckpointError",
    "extract_state_dict",
    "infer_architecture",
    "load_backbone_weights",
    "load_pretrained",
    "load_strict",
    "read_checkpoint",
    "to_tao_state_dict",
]

log = logging.getLogger(__name__)

TAO_PREFIX = "model.model."
_COUNTER = "num_batches_tracked"


class CheckpointFormatError(ValueError):
    """The file is not a checkpoint we can read (not a dict of tensors, encrypted, ...)."""


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys/shapes do not fit the model built from the spec."""


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did, key by key (model keys unless noted)."""

    source_format: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)  # shape differs: fresh init kept
    skipped: list[str] = field(default_factory=list)  # model keys the checkpoint lacks
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks


@dataclass
class BackboneLoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def to_tao_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` with TAO's ``model.model.`` prefix (what a TAO checkpoint holds)."""
    return {TAO_PREFIX + k: v for k, v in model.state_dict().items()}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a ``.pth``/``.pt``/``.ckpt`` or ``.safetensors`` file onto the CPU, running no code.

    ``.pth`` files go through :func:`rtdetr_trainer.model.safe_load.safe_torch_load`
    (``weights_only=True`` plus the plain data TAO's Lightning files carry). A file that wants
    anything else raises :class:`UnsafeCheckpointError` naming the file and the global.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(p), device="cpu"))
    unreadable = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)
    try:
        obj = safe_torch_load(p)
    except UnsafeCheckpointError:
        raise
    except (ImportError, AttributeError) as e:  # only with the trust opt-in: a missing class
        raise CheckpointFormatError(
            f"{p}: the checkpoint pickles Python objects that cannot be imported here ({e}); "
            "save only its state_dict"
        ) from None
    except unreadable as e:
        raise CheckpointFormatError(f"{p}: not a readable PyTorch checkpoint ({e})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"{p}: expected a dict, found {type(obj).__name__}")
    return dict(obj)


def extract_state_dict(
    checkpoint: Mapping[str, Any], name: str = "checkpoint"
) -> tuple[dict[str, Tensor], str]:
    """Find the detector's weights in a checkpoint and strip wrapper prefixes.

    Accepts a TAO/our Lightning-style file (``state_dict``), an original RT-DETR file
    (``ema.module`` preferred, else ``model``), or a bare state dict. Returns (state dict with
    ``backbone.``/``encoder.``/``decoder.`` keys, format name).
    """
    if checkpoint.get("state_dict_encrypted"):
        raise CheckpointFormatError(
            f"{name} is an encrypted TAO checkpoint; decrypt it with TAO first"
        )
    if isinstance(checkpoint.get("state_dict"), Mapping):
        fmt = "tao" if checkpoint.get("tao_model") else "lightning"
        raw = checkpoint["state_dict"]
    elif isinstance(checkpoint.get("ema"), Mapping) and isinstance(
        checkpoint["ema"].get("module"), Mapping
    ):
        fmt, raw = "rtdetr-original(ema)", checkpoint["ema"]["module"]
    elif isinstance(checkpoint.get("model"), Mapping):
        fmt, raw = "rtdetr-original", checkpoint["model"]
    else:
        fmt, raw = "state_dict", checkpoint
    sd = {strip_prefixes(k): v for k, v in raw.items() if isinstance(v, Tensor)}
    if not sd:
        raise CheckpointFormatError(f"{name} holds no tensors (format {fmt})")
    return sd, fmt


def _align_counters(sd: dict[str, Tensor], own: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """BN ``num_batches_tracked`` exists only with trainable BN (not FrozenBatchNorm2d): a
    difference there is a training option, not an architecture mismatch."""
    out = {k: v for k, v in sd.items() if not (k.endswith(_COUNTER) and k not in own)}
    for k, v in own.items():
        if k.endswith(_COUNTER) and k not in out:
            out[k] = v
    return out


def load_strict(
    model: nn.Module,
    checkpoint: Mapping[str, Any] | str | Path,
    *,
    expected: Mapping[str, Any] | None = None,
) -> str:
    """Load every weight or raise :class:`CheckpointMismatchError` naming what differs.

    Args:
        model: the model built from the spec.
        checkpoint: a checkpoint dict, a bare state dict, or a path.
        expected: optional spec facts for the message, e.g. ``{"dataset.num_classes": 7,
            "model.backbone": "resnet_50"}``.

    Returns the detected format name.
    """
    name = str(checkpoint) if isinstance(checkpoint, str | Path) else "checkpoint"
    ckpt = read_checkpoint(checkpoint) if isinstance(checkpoint, str | Path) else checkpoint
    sd, fmt = extract_state_dict(ckpt, name)
    own = model.state_dict()
    raw, sd = sd, _align_counters(sd, own)
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    wrong = sorted(k for k in own if k in sd and sd[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            # the checkpoint's own keys: the aligned copy borrows the model's BN counters,
            # which would make a ResNet-18 checkpoint look like the spec's deeper ResNet
            describe_mismatch(name, raw, own, missing, unexpected, wrong, expected or {})
        )
    model.load_state_dict(sd, strict=True)
    return fmt


def load_pretrained(
    model: nn.Module, checkpoint: Mapping[str, Any] | str | Path
) -> PretrainedReport:
    """Initialise ``model`` from a TAO, original RT-DETR or own checkpoint, as far as it fits."""
    name = str(checkpoint) if isinstance(checkpoint, str | Path) else "checkpoint"
    ckpt = read_checkpoint(checkpoint) if isinstance(checkpoint, str | Path) else checkpoint
    sd, fmt = extract_state_dict(ckpt, name)
    own = model.state_dict()
    report = PretrainedReport(source_format=fmt)
    theirs, ours = infer_architecture(sd).backbone, infer_architecture(own).backbone
    if theirs is not None and ours is not None and theirs != ours:
        # Another backbone (ResNet-vd of the original RT-DETR, or another depth): a few
        # same-shaped tensors (the stem) would load by name but mean nothing here.
        dropped = [k for k in sd if k.startswith("backbone.")]
        sd = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
        report.unexpected.extend(dropped)
        log.warning(
            "%s has a %s backbone, the model a %s one: loading encoder and decoder only "
            "(%d backbone tensors skipped)%s",
            name, theirs, ours, len(dropped),
            " (the original RT-DETR's ResNet-vd does not fit the plain ResNet)"
            if theirs == "resnet_vd" else "",
        )  # fmt: skip
    # BN counters are bookkeeping, not weights: keep ours where the checkpoint has none.
    sd = {k: v for k, v in sd.items() if not (k.endswith(_COUNTER) and k not in own)}
    merged = dict(own)
    for k, v in own.items():
        if k not in sd:
            if not k.endswith(_COUNTER):
                report.skipped.append(k)
        elif sd[k].shape != v.shape:
            report.reinitialised.append(k)
            log.info(
                "skip layer %s: checkpoint shape %s, model shape %s (kept fresh init)",
                k, list(sd[k].shape), list(v.shape),
            )  # fmt: skip
        else:
            merged[k] = sd[k].to(v.dtype)
            report.loaded.append(k)
    report.unexpected.extend(k for k in sd if k not in own)
    real_loaded = [k for k in report.loaded if not k.endswith(_COUNTER)]
    if not real_loaded:
        raise CheckpointMismatchError(
            f"{name}: no tensor fits the model (format {fmt}); it is not an RT-DETR checkpoint "
            f"of this layout. {infer_architecture(sd).summary()}"
        )
    model.load_state_dict(merged, strict=True)
    log.info(
        "loaded %d tensors from %s (%s); %d re-initialised, %d missing, %d unexpected dropped",
        len(report.loaded), name, fmt, len(report.reinitialised), len(report.skipped),
        len(report.unexpected),
    )  # fmt: skip
    return report


#: What a backbone file is expected to hold, per backbone class (for the error message).
_BACKBONE_KEY_HINTS: dict[str, str] = {
    "ResNet": "torchvision/timm ResNet keys such as 'conv1.weight', 'layer1.0.conv1.weight'",
    "EfficientViTL2": "TAO/MIT EfficientViT-L keys such as 'stages.0.op_list.0.conv.weight', "
    "'stages.4.op_list.1.context_module.main.qkv.conv.weight'",
}


def load_backbone_weights(
    backbone: nn.Module, source: Mapping[str, Any] | str | Path
) -> BackboneLoadReport:
    """Load ImageNet backbone weights into ``backbone``, from a file or a dict.

    ResNet: torchvision/timm keys (``conv1``, ``bn1``, ``layer*``; ``fc`` ignored). EfficientViT:
    TAO's/MIT's ``stages.*``, ``norm1..3`` (a classifier ``head`` is ignored). Keys may be bare or
    carry any wrapper prefix (``module.``, ``backbone.``, ``model.backbone.``, TAO's
    ``model.model.backbone.``; a full detector file gives its backbone). Only leading wrapper
    prefixes are removed: a name that merely contains ``module`` (EfficientViT's
    ``context_module``, ``local_module``) is kept whole, so every tensor that fits loads. Logs how
    many tensors loaded; raises :class:`CheckpointMismatchError` when none fits.
    """
    name = str(source) if isinstance(source, str | Path) else "backbone weights"
    ckpt = read_checkpoint(source) if isinstance(source, str | Path) else source
    sd, _ = extract_state_dict(ckpt, name)
    sd = {k.removeprefix("backbone."): v for k, v in sd.items()}
    own = backbone.state_dict()
    sd = _align_counters(sd, own)
    report = BackboneLoadReport()
    merged = dict(own)
    for k, v in own.items():
        if k in sd and sd[k].shape == v.shape:
            merged[k] = sd[k].to(v.dtype)
            report.loaded.append(k)
        else:
            report.missing.append(k)
    report.ignored = sorted(k for k in sd if k not in own or sd[k].shape != own[k].shape)
    kind = type(backbone).__name__
    if not [k for k in report.loaded if not k.endswith(_COUNTER)]:
        raise CheckpointMismatchError(
            f"{name}: no tensor fits the {kind} backbone "
            f"(first keys: {sorted(sd)[:5]}); expected "
            + _BACKBONE_KEY_HINTS.get(kind, "the backbone's own state-dict keys")
        )
    if report.missing:
        log.warning(
            "%s: %d backbone tensors not found or of another shape (e.g. %s)",
            name, len(report.missing), report.missing[:3],
        )  # fmt: skip
    backbone.load_state_dict(merged, strict=True)
    log.info(
        "model.pretrained_backbone_path: loaded %d of %d %s tensors from %s (%d ignored)",
        len(report.loaded), len(own), kind, name, len(report.ignored),
    )  # fmt: skip
    return report
