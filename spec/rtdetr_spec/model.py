"""``model:`` section: the RT-DETR architecture and its loss/matcher weights, TAO's defaults.

TAO's plain (timm-style, not ResNet-vd) ResNet backbones and ``efficientvit_l2`` (the backbone of
NVIDIA's v1.0/v1.0.1 warehouse model) are implemented. TAO's other backbone names are recognised so
that the error says "not implemented" rather than "unknown".
NVIDIA's model card writes ``backbone: resnet50``, which TAO itself does not register; we accept the
un-underscored spelling of every ResNet as an alias.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rtdetr_spec.base import SpecModel

RESNET_BACKBONES: tuple[str, ...] = ("resnet_18", "resnet_34", "resnet_50", "resnet_101")
SUPPORTED_BACKBONES: tuple[str, ...] = (*RESNET_BACKBONES, "efficientvit_l2")
#: TAO backbone names this trainer recognises but does not implement.
TAO_ONLY_BACKBONES: tuple[str, ...] = (
    *(f"convnext_{s}" for s in ("tiny", "small", "base", "large", "xlarge")),
    *(f"fan_{s}" for s in ("tiny", "small", "base", "large")),
    *(f"efficientvit_{s}" for s in ("b0", "b1", "b2", "b3", "l0", "l1", "l3")),
)
BACKBONE_ALIASES: dict[str, str] = {b.replace("_", ""): b for b in RESNET_BACKBONES}


def normalize_backbone(name: str) -> str:
    """Map ``resnet50``/``ResNet_50`` to TAO's ``resnet_50``; refuse anything not implemented."""
    key = name.strip().lower()
    key = BACKBONE_ALIASES.get(key, key)
    if key in SUPPORTED_BACKBONES:
        return key
    if key in TAO_ONLY_BACKBONES:
        raise ValueError(
            f"backbone {name!r} is a TAO backbone this trainer does not implement; "
            f"supported: {', '.join(SUPPORTED_BACKBONES)}"
        )
    raise ValueError(
        f"unknown backbone {name!r}; supported: {', '.join(SUPPORTED_BACKBONES)} "
        f"(aliases {', '.join(BACKBONE_ALIASES)})"
    )


class FrozenFMConfig(SpecModel):
    """TAO's frozen-foundation-model option; accepted for compatibility, must stay disabled."""

    enabled: Literal[False] = False
    backbone: str = "radio_v2-l"
    checkpoint: str | None = None


class ModelConfig(SpecModel):
    """Architecture hyper-parameters (encoder/decoder sizes, queries, loss and matcher weights)."""

    precise_msda: bool = False
    pretrained_backbone_path: str | None = None
    backbone: str = "resnet_50"
    train_backbone: bool = True
    load_teacher_enc_dec: bool = False
    num_queries: int = Field(default=300, ge=1)
    num_select: int = Field(default=300, ge=1)
    num_feature_levels: int = Field(default=3, ge=1)
    return_interm_indices: list[int] = Field(default_factory=lambda: [1, 2, 3])
    feat_strides: list[int] = Field(default_factory=lambda: [8, 16, 32])
    feat_channels: list[int] = Field(default_factory=lambda: [256, 256, 256])
    use_encoder_idx: list[int] = Field(default_factory=lambda: [2])
    hidden_dim: int = Field(default=256, ge=8)
    nheads: int = Field(default=8, ge=1)
    dropout_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    enc_layers: int = Field(default=1, ge=1)
    dim_feedforward: int = Field(default=1024, ge=1)
    pe_temperature: int = Field(default=10000, ge=1)
    expansion: float = Field(default=1.0, gt=0.0)
    depth_mult: float = Field(default=1.0, gt=0.0)
    enc_act: str = "gelu"
    act: str = "silu"
    dec_layers: int = Field(default=6, ge=1)
    dn_number: int = Field(default=100, ge=0)
    eval_idx: int = Field(default=-1, ge=-1)
    vfl_loss_coef: float = Field(default=1.0, ge=0.0)
    bbox_loss_coef: float = Field(default=5.0, ge=0.0)
    giou_loss_coef: float = Field(default=2.0, ge=0.0)
    class_cost: float = Field(default=2.0, ge=0.0)
    bbox_cost: float = Field(default=5.0, ge=0.0)
    giou_cost: float = Field(default=2.0, ge=0.0)
    alpha: float = 0.75
    gamma: float = 2.0
    clip_max_norm: float = 0.1
    aux_loss: bool = True
    loss_types: list[str] = Field(default_factory=lambda: ["vfl", "boxes"])
    backbone_names: list[str] = Field(default_factory=lambda: ["backbone.0"])
    linear_proj_names: list[str] = Field(
        default_factory=lambda: ["reference_points", "sampling_offsets"]
    )
    distillation_loss_coef: float = Field(default=1.0, ge=0.0)
    frozen_fm: FrozenFMConfig = Field(default_factory=FrozenFMConfig)

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        return normalize_backbone(v)

    @field_validator("enc_act", "act")
    @classmethod
    def _activation(cls, v: str) -> str:
        if v not in ("relu", "gelu", "silu"):
            raise ValueError(f"must be one of relu, gelu, silu; got {v!r}")
        return v

    @model_validator(mode="after")
    def _levels(self) -> ModelConfig:
        n = self.num_feature_levels
        if len(self.return_interm_indices) != n:
            raise ValueError(
                f"return_interm_indices has {len(self.return_interm_indices)} entries but "
                f"num_feature_levels is {n}"
            )
        if any(i < 0 or i > 3 for i in self.return_interm_indices):
            raise ValueError(
                f"return_interm_indices must be in 0..3, got {self.return_interm_indices}"
            )
        if len(self.feat_strides) != n or len(self.feat_channels) != n:
            raise ValueError(f"feat_strides and feat_channels need {n} entries each")
        if any(i < 0 or i >= n for i in self.use_encoder_idx):
            raise ValueError(f"use_encoder_idx must index the {n} feature levels")
        if self.hidden_dim % self.nheads:
            raise ValueError(
                f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}"
            )
        if self.eval_idx >= self.dec_layers:
            raise ValueError(
                f"eval_idx {self.eval_idx} is not a decoder layer (dec_layers {self.dec_layers})"
            )
        return self
