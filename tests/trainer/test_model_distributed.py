"""The loss normaliser is averaged over DDP ranks (real gloo process group, two processes)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rtdetr_trainer.model.criterion import Criterion
from rtdetr_trainer.model.matcher import HungarianMatcher


def _worker(rank: int, init_file: str, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        boxes = 3 if rank == 0 else 0
        targets = [{"labels": torch.zeros(boxes, dtype=torch.long), "boxes": torch.rand(boxes, 4)}]
        crit = Criterion(2, HungarianMatcher())
        results[rank] = crit.num_boxes(targets, torch.device("cpu")).item()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_num_boxes_is_the_mean_over_ranks(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), results), nprocs=2, join=True)
        assert dict(results) == {0: 1.5, 1: 1.5}


def test_num_boxes_without_a_process_group_is_local_and_at_least_one():
    crit = Criterion(2, HungarianMatcher())
    none = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    assert crit.num_boxes(none, torch.device("cpu")).item() == 1.0
    two = [{"labels": torch.zeros(2, dtype=torch.long), "boxes": torch.rand(2, 4)}] * 2
    assert crit.num_boxes(two, torch.device("cpu")).item() == 4.0
