"""The training DataLoader: the sampler that shards an epoch over processes, and its batches."""

from __future__ import annotations

from torch.utils.data import DataLoader

from rtdetr_spec import ExperimentSpec
from rtdetr_trainer.data.datasets import TrainDataset, TrainSampler, collate
from rtdetr_trainer.data.pipeline import TrainData
from rtdetr_trainer.data.transforms import TrainTransform
from rtdetr_trainer.engine.distributed import DistContext
from rtdetr_trainer.errors import UserInputError


def train_loader(
    spec: ExperimentSpec, data: TrainData, seed: int, ctx: DistContext
) -> tuple[DataLoader, TrainSampler]:
    """This process's shard of the training set, in batches of ``dataset.batch_size``.

    Batches are ``(images [B, 3, H, W], targets)`` at ``train_spatial_size`` (multi-scale
    resizing happens per step in the loop); every process sees a disjoint sample of the epoch.
    """
    aug = spec.dataset.augmentation
    h, w = aug.train_spatial_size
    dataset = TrainDataset(
        data.train,
        TrainTransform(h, w, distortion_prob=aug.distortion_prob, iou_crop_prob=aug.iou_crop_prob),
    )
    sampler = TrainSampler(
        data.train.sources,
        data.sample_sizes,
        seed=seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    bs = spec.dataset.batch_size
    if len(sampler) < bs:
        raise UserInputError(
            f"each of the {ctx.world_size} training process(es) gets {len(sampler)} "
            f"images per epoch, fewer than dataset.batch_size {bs}: no full batch to train on"
        )
    workers = spec.dataset.workers
    loader = DataLoader(
        dataset,
        batch_size=bs,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=spec.dataset.pin_memory and ctx.device.type == "cuda",
        persistent_workers=workers > 0,
    )
    return loader, sampler
