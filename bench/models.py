"""The two detectors under test, built the same way for every cell.

Ours: ``rtdetr_trainer.model.build_model`` with the spec's defaults for the chosen ResNet depth
and 7 classes. For training it is built as the product fine-tunes (``pretrained_backbone_path``
set, so the stem is frozen and backbone BN are ``FrozenBatchNorm2d``; no file is read).

Peer: transformers' ``RTDetrForObjectDetection`` from ``RTDetrConfig`` defaults (ResNet-50-vd
backbone, 300 queries, 100 denoising queries, 6 decoder layers), ``num_labels=7``, random init,
no download. Its backbone BN are frozen by default; for training its stem is frozen too, so both
models do the same work as the product's fine-tuning.

Targets: per image 4-12 random boxes (normalised cxcywh) from a fixed seed, identical for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

NUM_CLASSES = 7


def build_ours(
    depth: int, size: int, *, train: bool, queries: int = 300, backbone: str | None = None
) -> nn.Module:
    """``backbone`` (e.g. ``efficientvit_l2``) replaces ``resnet_{depth}`` when given."""
    from rtdetr_spec.model import ModelConfig
    from rtdetr_trainer.model import build_model

    name = backbone or f"resnet_{depth}"
    overrides: dict[str, Any] = {"backbone": name, "num_queries": queries}
    if train:
        overrides["pretrained_backbone_path"] = "imagenet-weights-not-read.pth"
    cfg = ModelConfig(**overrides)
    model = build_model(cfg, NUM_CLASSES, (size, size), load_backbone_weights=False)
    return model.train(train)


def build_criterion(depth: int) -> nn.Module:
    from rtdetr_spec.model import ModelConfig
    from rtdetr_trainer.model import build_criterion as build

    return build(ModelConfig(backbone=f"resnet_{depth}"), NUM_CLASSES)


def hf_config(depth: int, queries: int = 300) -> Any:
    from transformers import RTDetrConfig, RTDetrResNetConfig

    if depth == 50:
        return RTDetrConfig(num_labels=NUM_CLASSES, num_queries=queries)
    if depth not in (18, 34):
        raise ValueError(f"no transformers RT-DETR layout for ResNet-{depth} in this suite")
    # Same shape as ours at that depth (basic blocks; TAO's encoder expansion 1.0, 6 decoder
    # layers), not the original repository's lighter R18/R34 variants.
    depths = [2, 2, 2, 2] if depth == 18 else [3, 4, 6, 3]
    backbone = RTDetrResNetConfig(
        depths=depths,
        layer_type="basic",
        hidden_sizes=[64, 128, 256, 512],
        out_features=["stage2", "stage3", "stage4"],
    )
    return RTDetrConfig(
        num_labels=NUM_CLASSES,
        num_queries=queries,
        backbone_config=backbone,
        encoder_in_channels=[128, 256, 512],
        hidden_expansion=1.0,
        decoder_layers=6,
    )


def build_hf(depth: int, *, train: bool, queries: int = 300) -> nn.Module:
    from transformers import RTDetrForObjectDetection

    model = RTDetrForObjectDetection(hf_config(depth, queries))
    if train:
        embedder = model.model.backbone.model.embedder
        for p in embedder.parameters():
            p.requires_grad_(False)
    return model.train(train)


def synthetic_targets(batch: int, seed: int = 0) -> list[dict[str, Tensor]]:
    """Per image ``labels`` int64 [N] in 0..6 and ``boxes`` float32 [N, 4] cxcywh in (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        n = int(torch.randint(4, 13, (), generator=g))
        wh = torch.rand(n, 2, generator=g) * 0.25 + 0.03
        xy = wh / 2 + torch.rand(n, 2, generator=g) * (1 - wh)
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
        out.append({"labels": labels, "boxes": torch.cat([xy, wh], 1)})
    return out


def hf_labels(targets: list[dict[str, Tensor]], device: torch.device) -> list[dict[str, Tensor]]:
    return [
        {"class_labels": t["labels"].to(device), "boxes": t["boxes"].to(device)} for t in targets
    ]


def export_onnx(depth: int, size: int, path: Path, queries: int = 300) -> str:
    """Export our model with a dynamic batch axis; returns the exporter that was used."""
    model = build_ours(depth, size, train=False, queries=queries)
    try:
        from rtdetr_trainer.export.graph import DeployModel
        from rtdetr_trainer.export.graph import export_onnx as project_export
    except ImportError:
        project_export = None
    tmp = path.with_suffix(".partial.onnx")
    if project_export is not None:
        module = DeployModel(model, prepend_background=False)
        project_export(
            module,
            tmp,
            height=size,
            width=size,
            batch_size=-1,
            opset=17,
            num_queries=queries,
            device=torch.device("cpu"),
        )
        exporter = "rtdetr_trainer.export.graph.export_onnx (opset 17, dynamic batch)"
    else:
        import warnings

        axes = {n: {0: "batch"} for n in ("inputs", "pred_logits", "pred_boxes")}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.export_module(),
                (torch.rand(1, 3, size, size),),
                str(tmp),
                opset_version=17,
                dynamo=False,
                input_names=["inputs"],
                output_names=["pred_logits", "pred_boxes"],
                dynamic_axes=axes,
            )
        exporter = "torch.onnx.export(model.export_module(), opset_version=17, dynamo=False)"
    tmp.replace(path)
    return exporter
