"""Typed factories from the experiment spec's ``model:`` section to modules.

The decoder's width-independent settings (8 heads, FFN 1024, dropout 0, relu, 4 points, label
noise 0.5, box noise 1.0) are hard-coded in TAO rather than read from the spec; so they are here.
``model.nheads``/``dim_feedforward``/``dropout_ratio`` apply to the encoder only, as in TAO, and
``model.aux_loss`` is ignored as in TAO (auxiliary losses are always on; a warning says so).
"""

from __future__ import annotations

import logging

from rtdetr_spec.model import ModelConfig
from rtdetr_trainer.model.backbone import ResNet
from rtdetr_trainer.model.criterion import Criterion, LossWeights
from rtdetr_trainer.model.decoder import RTDETRTransformer
from rtdetr_trainer.model.efficientvit import EfficientViTL2
from rtdetr_trainer.model.hybrid_encoder import HybridEncoder
from rtdetr_trainer.model.matcher import HungarianMatcher
from rtdetr_trainer.model.postprocess import PostProcessor
from rtdetr_trainer.model.rtdetr import RTDETR

log = logging.getLogger(__name__)

#: spec backbone name -> ResNet depth.
BACKBONE_DEPTHS: dict[str, int] = {
    "resnet_18": 18,
    "resnet_34": 34,
    "resnet_50": 50,
    "resnet_101": 101,
}
#: Backbones that are not ResNets (built by their own class).
OTHER_BACKBONES: tuple[str, ...] = ("efficientvit_l2",)


def build_model(
    model_cfg: ModelConfig,
    num_classes: int,
    eval_spatial_size: tuple[int, int],
    *,
    activation_checkpoint: bool = False,
    load_backbone_weights: bool = True,
) -> RTDETR:
    """Build RT-DETR as TAO's ``build_model`` does.

    Args:
        model_cfg: the validated ``model:`` section.
        num_classes: ``dataset.num_classes`` (logit columns).
        eval_spatial_size: ``dataset.augmentation.eval_spatial_size`` as (height, width).
        activation_checkpoint: ``train.activation_checkpoint`` (backbone stages).
        load_backbone_weights: with ``model.pretrained_backbone_path`` set, TAO freezes the
            ResNet stem and all ResNet BN (FrozenBatchNorm2d; EfficientViT keeps training its BN)
            and loads the ImageNet weights. False keeps that structure but skips reading the
            file (evaluate/export load a full checkpoint).
    """
    if num_classes < 1:
        raise ValueError(f"dataset.num_classes must be >= 1, got {num_classes}")
    depth = BACKBONE_DEPTHS.get(model_cfg.backbone)
    if depth is None and model_cfg.backbone not in OTHER_BACKBONES:
        raise ValueError(
            f"model.backbone {model_cfg.backbone!r} is not implemented; "
            f"choose one of {', '.join((*BACKBONE_DEPTHS, *OTHER_BACKBONES))}"
        )
    h, w = (int(v) for v in eval_spatial_size)
    stride = max(model_cfg.feat_strides)
    if h % stride or w % stride:
        raise ValueError(
            f"eval_spatial_size {[h, w]} must be multiples of the largest stride {stride}"
        )
    if any(c != model_cfg.hidden_dim for c in model_cfg.feat_channels):
        raise ValueError(
            f"model.feat_channels {model_cfg.feat_channels} are the encoder's output widths and "
            f"must all equal model.hidden_dim={model_cfg.hidden_dim}"
        )
    pretrained = model_cfg.pretrained_backbone_path
    backbone: ResNet | EfficientViTL2
    if depth is None:
        # TAO never freezes EfficientViT's stem or norms for a pretrained backbone.
        backbone = EfficientViTL2(
            model_cfg.return_interm_indices,
            train_backbone=model_cfg.train_backbone,
            activation_checkpoint=activation_checkpoint,
        )
    else:
        freeze_at: tuple[int, ...] = (0,) if pretrained and model_cfg.train_backbone else ()
        backbone = ResNet(
            depth,
            model_cfg.return_interm_indices,
            train_backbone=model_cfg.train_backbone,
            freeze_at=freeze_at,
            freeze_norm=bool(pretrained) and model_cfg.train_backbone,
            activation_checkpoint=activation_checkpoint,
        )
    if backbone.out_strides != list(model_cfg.feat_strides):
        raise ValueError(
            f"model.feat_strides {model_cfg.feat_strides} do not match the strides "
            f"{backbone.out_strides} of return_interm_indices {model_cfg.return_interm_indices}"
        )
    if pretrained and load_backbone_weights:
        from rtdetr_trainer.model.weights import load_backbone_weights as load_backbone

        load_backbone(backbone, pretrained)
    encoder = HybridEncoder(
        backbone.out_channels,
        model_cfg.feat_strides,
        hidden_dim=model_cfg.hidden_dim,
        nhead=model_cfg.nheads,
        dim_feedforward=model_cfg.dim_feedforward,
        dropout=model_cfg.dropout_ratio,
        enc_act=model_cfg.enc_act,
        use_encoder_idx=model_cfg.use_encoder_idx,
        num_encoder_layers=model_cfg.enc_layers,
        pe_temperature=model_cfg.pe_temperature,
        expansion=model_cfg.expansion,
        depth_mult=model_cfg.depth_mult,
        act=model_cfg.act,
        eval_spatial_size=(h, w),
    )
    if not model_cfg.aux_loss:
        log.warning(
            "model.aux_loss is false, but TAO's RT-DETR always trains with auxiliary and "
            "denoising losses; this trainer does the same and ignores the setting"
        )
    decoder = RTDETRTransformer(
        num_classes,
        hidden_dim=model_cfg.hidden_dim,
        num_queries=model_cfg.num_queries,
        feat_channels=model_cfg.feat_channels,
        feat_strides=model_cfg.feat_strides,
        num_levels=model_cfg.num_feature_levels,
        num_decoder_layers=model_cfg.dec_layers,
        num_denoising=model_cfg.dn_number,
        eval_spatial_size=(h, w),
        eval_idx=model_cfg.eval_idx,
        aux_loss=True,
    )
    return RTDETR(backbone, encoder, decoder)


def build_criterion(model_cfg: ModelConfig, num_classes: int) -> Criterion:
    """The set criterion with TAO's matcher costs and loss weights from the spec."""
    matcher = HungarianMatcher(
        cost_class=model_cfg.class_cost,
        cost_bbox=model_cfg.bbox_cost,
        cost_giou=model_cfg.giou_cost,
    )
    weights = LossWeights(
        vfl=model_cfg.vfl_loss_coef, bbox=model_cfg.bbox_loss_coef, giou=model_cfg.giou_loss_coef
    )
    return Criterion(
        num_classes,
        matcher,
        weights,
        alpha=model_cfg.alpha,
        gamma=model_cfg.gamma,
        losses=tuple(model_cfg.loss_types),
    )


def build_postprocessor(
    model_cfg: ModelConfig, *, background_index: int | None = None
) -> PostProcessor:
    """Top-``model.num_select`` decoding (no NMS)."""
    return PostProcessor(num_select=model_cfg.num_select, background_index=background_index)
