"""Read the architecture off a state dict, for error messages that say what a checkpoint is.

A checkpoint that does not fit is usually a different ``num_classes``, backbone depth or number
of decoder layers; naming those (with the key that shows it) turns a wall of key names into
"checkpoint has 80 classes (decoder.enc_score_head.weight [80, 256]) but the spec says
dataset.num_classes=7".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

_SHOW = 8


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a state dict (keys without ``model.model.``) says about the model."""

    backbone: str | None  # resnet_18/34/50/101, efficientvit_l2, "resnet_vd" or None
    num_classes: int | None
    hidden_dim: int | None
    dec_layers: int | None
    enc_layers: int | None
    num_levels: int | None
    denoising: bool
    frozen_backbone_bn: bool | None

    def summary(self) -> str:
        parts = [
            f"backbone {self.backbone or 'unknown'}",
            f"{self.num_classes if self.num_classes is not None else '?'} classes",
            f"{self.dec_layers if self.dec_layers is not None else '?'} decoder layers",
            f"hidden_dim {self.hidden_dim if self.hidden_dim is not None else '?'}",
        ]
        return "the checkpoint looks like: " + ", ".join(parts)


#: Wrapper prefixes stripped from checkpoint keys (DDP, TAO Lightning, torch.compile).
WRAPPER_PREFIXES = ("module.", "model.model.", "model.", "_orig_mod.")


def strip_prefixes(key: str) -> str:
    """``module.model.model.backbone.conv1.weight`` -> ``backbone.conv1.weight``."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


#: A key only EfficientViT-L2 (TAO's layout) has: stage 4 is attention blocks.
_EFFICIENTVIT_L2_KEY = "backbone.stages.4.op_list.8.context_module.main.qkv."


def _count(sd: Mapping[str, Any], pattern: str) -> int | None:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return max(found) + 1 if found else None


def is_resnet_vd(sd: Mapping[str, Any]) -> bool:
    """Original RT-DETR's PResNet (deep stem, ``res_layers``) rather than a plain ResNet."""
    return any(k.startswith(("backbone.res_layers.", "backbone.conv1.conv1_")) for k in sd)


def infer_architecture(sd: Mapping[str, Tensor]) -> ArchitectureInfo:
    """Backbone depth, classes, decoder layers, ... from key names and shapes (any prefix)."""
    sd = {strip_prefixes(k): v for k, v in sd.items()}
    backbone: str | None = None
    if is_resnet_vd(sd):
        backbone = "resnet_vd"
    elif any(k.startswith(_EFFICIENTVIT_L2_KEY) for k in sd):
        backbone = "efficientvit_l2"
    else:
        stage3 = _count(sd, r"backbone\.layer3\.(\d+)\.")
        bottleneck = "backbone.layer1.0.conv3.weight" in sd
        depth = {(2, False): 18, (6, False): 34, (6, True): 50, (23, True): 101}.get(
            (stage3 or 0, bottleneck)
        )
        backbone = f"resnet_{depth}" if depth else None
    score = sd.get("decoder.enc_score_head.weight")
    frozen = None
    for first_norm in ("backbone.bn1", "backbone.stages.0.op_list.0.norm"):
        if first_norm + ".weight" in sd:
            frozen = first_norm + ".num_batches_tracked" not in sd
    return ArchitectureInfo(
        backbone=backbone,
        num_classes=int(score.shape[0]) if score is not None else None,
        hidden_dim=int(score.shape[1]) if score is not None else None,
        dec_layers=_count(sd, r"decoder\.decoder\.layers\.(\d+)\."),
        enc_layers=_count(sd, r"encoder\.encoder\.0\.layers\.(\d+)\."),
        num_levels=_count(sd, r"decoder\.input_proj\.(\d+)\."),
        denoising="decoder.denoising_class_embed.weight" in sd,
        frozen_backbone_bn=frozen,
    )


def _shape(t: Tensor) -> list[int]:
    return list(t.shape)


def describe_mismatch(
    name: str,
    sd: Mapping[str, Tensor],
    own: Mapping[str, Tensor],
    missing: Sequence[str],
    unexpected: Sequence[str],
    wrong: Sequence[str],
    expected: Mapping[str, Any],
) -> str:
    """One message: the architectural differences first, then the key lists (abridged)."""
    ck, md = infer_architecture(sd), infer_architecture(own)
    reasons: list[str] = []
    if ck.num_classes != md.num_classes and ck.num_classes is not None:
        spec = expected.get("dataset.num_classes", md.num_classes)
        key = "decoder.enc_score_head.weight"
        reasons.append(
            f"checkpoint has {ck.num_classes} classes ({key} {_shape(sd[key])}) but the spec "
            f"says dataset.num_classes={spec}"
        )
    if ck.backbone != md.backbone:
        spec = expected.get("model.backbone", md.backbone)
        reasons.append(
            f"checkpoint backbone looks like {ck.backbone or 'unknown'} but the spec says "
            f"model.backbone={spec}"
        )
    if ck.dec_layers != md.dec_layers:
        spec = expected.get("model.dec_layers", md.dec_layers)
        reasons.append(
            f"checkpoint has {ck.dec_layers} decoder layers but the spec says "
            f"model.dec_layers={spec}"
        )
    if ck.hidden_dim != md.hidden_dim and ck.hidden_dim is not None:
        spec = expected.get("model.hidden_dim", md.hidden_dim)
        reasons.append(f"checkpoint hidden_dim {ck.hidden_dim} but model.hidden_dim={spec}")
    if ck.denoising != md.denoising:
        reasons.append(
            "checkpoint "
            + ("has" if ck.denoising else "lacks")
            + " decoder.denoising_class_embed (model.dn_number > 0 in one of them only)"
        )
    lines = [f"{name} does not fit the model built from the spec."]
    if reasons:
        lines.append("; ".join(reasons) + ".")
    if wrong:
        shown = ", ".join(f"{k} {_shape(sd[k])} vs model {_shape(own[k])}" for k in wrong[:_SHOW])
        lines.append(
            f"{len(wrong)} shape mismatches: {shown}" + (" ..." if len(wrong) > _SHOW else "")
        )
    if missing:
        lines.append(
            f"{len(missing)} keys missing from the checkpoint: {', '.join(missing[:_SHOW])}"
            + (" ..." if len(missing) > _SHOW else "")
        )
    if unexpected:
        lines.append(
            f"{len(unexpected)} unexpected keys in the checkpoint: {', '.join(unexpected[:_SHOW])}"
            + (" ..." if len(unexpected) > _SHOW else "")
        )
    lines.append(ck.summary() + ".")
    return "\n".join(lines)
