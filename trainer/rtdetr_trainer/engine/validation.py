"""Validation during training: val loss and COCO mAP/mAP50/per-class AP50 on the val source.

Every rank predicts its shard; COCO results are gathered on rank 0, which scores them. Shards are
padded to equal length (a few images repeated, deduplicated by image id afterwards) because the
criterion all-reduces its box count on every call: ranks must make the same number of calls.
Images are preprocessed exactly as ``rtdetr evaluate`` and serving do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from rtdetr_spec.artifacts import ClassMap
from rtdetr_trainer.data.datasets import EvalDataset, collate
from rtdetr_trainer.data.index import DetectionIndex
from rtdetr_trainer.engine.distributed import DistContext
from rtdetr_trainer.engine.tracking import NUM_IMAGES, sample_images
from rtdetr_trainer.evaluation.coco_eval import EvalMetrics, coco_evaluate, detections_to_coco
from rtdetr_trainer.evaluation.ground_truth import coco_ground_truth
from rtdetr_trainer.evaluation.predictor import TorchPredictor


def padded_shard(n: int, rank: int, world_size: int) -> list[int]:
    """Rank-strided indices, padded so every rank gets ceil(n / world) of them."""
    per_rank = math.ceil(n / world_size)
    return [(rank + k * world_size) % n for k in range(per_rank)]


@dataclass
class ValidationResult:
    loss: float
    metrics: EvalMetrics | None  # on rank 0 only
    samples: list[Any] = field(default_factory=list)  # rank 0: a few images for tracking


class Validator:
    def __init__(
        self,
        ctx: DistContext,
        index: DetectionIndex,
        categories: dict[int, str],
        class_map: ClassMap,
        *,
        input_size: tuple[int, int],
        batch_size: int,
        workers: int,
        criterion: nn.Module,
        num_select: int,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.ctx, self.class_map, self.criterion = ctx, class_map, criterion
        self.input_size, self.num_select = input_size, num_select
        self.autocast_dtype = autocast_dtype
        self.gt = coco_ground_truth(index, categories) if ctx.is_main else None
        dataset = EvalDataset(index, *input_size)
        shard = padded_shard(len(dataset), ctx.rank, ctx.world_size)
        self.loader = DataLoader(
            Subset(dataset, shard),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    @torch.no_grad()
    def run(self, model: nn.Module) -> ValidationResult:
        predictor = TorchPredictor(
            model,
            self.input_size,
            device=self.ctx.device,
            class_map=self.class_map,
            num_select=self.num_select,
            autocast_dtype=self.autocast_dtype,
        )
        was_training = model.training
        loss_sum, batches = 0.0, 0
        by_image: dict[int, list[dict[str, Any]]] = {}
        samples: list[Any] = []
        try:
            for batch in self.loader:
                batch.raise_if_failed()
                out = predictor.outputs(batch.images)
                targets = [{k: v.to(self.ctx.device) for k, v in t.items()} for t in batch.targets]
                losses = self.criterion(
                    {k: out[k].float() for k in ("pred_logits", "pred_boxes")}, targets
                )
                loss_sum += float(sum(losses.values()))
                batches += 1
                dets = predictor.decode(
                    out["pred_logits"].float().cpu().numpy(),
                    out["pred_boxes"].float().cpu().numpy(),
                    batch.orig_sizes.numpy(),
                )
                for image_id, det in zip(batch.image_ids, dets, strict=True):
                    by_image[image_id] = detections_to_coco([image_id], [det], self.class_map)
                if self.ctx.is_main and len(samples) < NUM_IMAGES:
                    samples += sample_images(batch, dets, NUM_IMAGES - len(samples))
        finally:
            model.train(was_training)
        totals = self.ctx.mean({"loss_sum": loss_sum, "batches": float(batches)})
        loss = totals["loss_sum"] / max(totals["batches"], 1.0)
        gathered = self.ctx.all_gather_object(by_image)
        if not self.ctx.is_main:
            return ValidationResult(loss, None)
        merged: dict[int, list[dict[str, Any]]] = {}
        for part in gathered:
            for image_id, dets in part.items():
                merged.setdefault(image_id, dets)  # padded repeats of an image count once
        results = [r for dets in merged.values() for r in dets]
        assert self.gt is not None
        return ValidationResult(loss, coco_evaluate(self.gt, results), samples)
