"""Torch datasets, batches and samplers over a :class:`DetectionIndex`.

A corrupt image found inside a DataLoader worker must not surface as a worker crash with a
traceback of torch internals: datasets return a :class:`LoadFailure` naming the file instead, the
collate function turns it into ``Batch.failure``, and the training loop raises a
:class:`~rtdetr_trainer.errors.DataError` with that message in the main process.

Targets follow the model's contract: ``labels`` int64 [N] logit indices and ``boxes`` float32
[N, 4] normalised (cx, cy, w, h).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from rtdetr_serving.preprocess import to_model_input
from rtdetr_trainer.data.images import ImageLoader
from rtdetr_trainer.data.index import DetectionIndex
from rtdetr_trainer.data.transforms import TrainTransform, to_normalized_cxcywh
from rtdetr_trainer.errors import DataError


@dataclass(frozen=True)
class LoadFailure:
    message: str


@dataclass
class Item:
    image: torch.Tensor  # float32 [3, H, W] in [0, 1]
    target: dict[str, torch.Tensor]
    image_id: int
    orig_size: tuple[int, int]  # (width, height)


@dataclass
class Batch:
    """A collated batch: images [B, 3, H, W], per-image targets, ids and original (w, h)."""

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    image_ids: list[int]
    orig_sizes: torch.Tensor  # float32 [B, 2] (width, height)
    failure: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def raise_if_failed(self) -> None:
        if self.failure:
            raise DataError(self.failure)


def _targets(index: DetectionIndex, i: int, *, drop_crowd: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = index.annotation_rows(i)
    boxes = np.asarray(index.boxes[rows], dtype=np.float32)
    labels = np.asarray(index.labels[rows], dtype=np.int64)
    if drop_crowd:
        keep = np.asarray(index.iscrowd[rows]) == 0
        boxes, labels = boxes[keep], labels[keep]
    return boxes, labels


class TrainDataset(Dataset):
    """Augmented training samples (TAO's pipeline); crowd boxes are not training targets."""

    def __init__(self, index: DetectionIndex, transform: TrainTransform) -> None:
        self.index = index
        self.transform = transform
        self.loader = ImageLoader(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Item | LoadFailure:
        try:
            img = self.loader.load(i)
        except DataError as e:
            return LoadFailure(str(e))
        boxes, labels = _targets(self.index, i, drop_crowd=True)
        arr, cxcywh, labels = self.transform(img, boxes, labels)
        target = {"labels": torch.from_numpy(labels), "boxes": torch.from_numpy(cxcywh)}
        return Item(torch.from_numpy(arr), target, int(self.index.image_ids[i]), img.size)


class EvalDataset(Dataset):
    """Images resized exactly as serving does (:func:`rtdetr_serving.preprocess.to_model_input`)."""

    def __init__(self, index: DetectionIndex, height: int, width: int) -> None:
        self.index = index
        self.height, self.width = height, width
        self.loader = ImageLoader(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Item | LoadFailure:
        try:
            img = self.loader.load(i)
        except DataError as e:
            return LoadFailure(str(e))
        boxes, labels = _targets(self.index, i, drop_crowd=True)
        w, h = img.size
        target = {
            "labels": torch.from_numpy(labels),
            "boxes": torch.from_numpy(to_normalized_cxcywh(boxes, w, h)),
        }
        arr = to_model_input(img, self.height, self.width)
        return Item(torch.from_numpy(arr), target, int(self.index.image_ids[i]), (w, h))


def collate(items: Sequence[Item | LoadFailure]) -> Batch:
    failures = [it.message for it in items if isinstance(it, LoadFailure)]
    if failures:
        return Batch(torch.empty(0), [], [], torch.empty(0, 2), failure=failures[0])
    good = [it for it in items if isinstance(it, Item)]
    return Batch(
        images=torch.stack([it.image for it in good]),
        targets=[it.target for it in good],
        image_ids=[it.image_id for it in good],
        orig_sizes=torch.tensor([it.orig_size for it in good], dtype=torch.float32),
    )


class TrainSampler(Sampler[int]):
    """Per-epoch shuffled, rank-sharded indices, with an optional per-source ``sample_size``.

    Same contract as ``torch.utils.data.DistributedSampler`` (permutation seeded by seed + epoch,
    padded to a multiple of the world size, rank-strided) so that every rank sees as many
    samples and no rank waits at a collective; in addition each source with a ``sample_size``
    contributes a fresh seeded random subset of that many images every epoch.
    """

    def __init__(
        self,
        sources: np.ndarray,
        sample_sizes: Sequence[int | None],
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.sources = np.asarray(sources)
        self.sample_sizes = list(sample_sizes)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self._epoch_len = self._pool_size()

    def _pool_size(self) -> int:
        total = 0
        for s, k in enumerate(self.sample_sizes):
            n = int((self.sources == s).sum())
            total += n if k is None else min(k, n)
        return total

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> np.ndarray:
        """This epoch's indices for all ranks (before sharding)."""
        rng = np.random.default_rng([max(self.seed, 0), self.epoch])
        pool = []
        for s, k in enumerate(self.sample_sizes):
            members = np.flatnonzero(self.sources == s)
            if k is not None and k < len(members):
                members = np.sort(rng.choice(members, size=k, replace=False))
            pool.append(members)
        indices = np.concatenate(pool) if pool else np.zeros(0, dtype=np.int64)
        return indices[rng.permutation(len(indices))]

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()
        total = len(self) * self.world_size
        if len(indices) and total > len(indices):
            reps = math.ceil(total / len(indices))
            indices = np.concatenate([indices] * reps)[:total]
        return iter(int(i) for i in indices[self.rank : total : self.world_size])

    def __len__(self) -> int:
        return math.ceil(self._epoch_len / self.world_size)


def shard(n: int, rank: int, world_size: int) -> list[int]:
    """Evaluation sharding: rank-strided, no padding (results are gathered by image id)."""
    return list(range(rank, n, world_size))
