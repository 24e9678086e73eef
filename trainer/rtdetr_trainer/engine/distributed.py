"""The worker's view of the process group torchrun set up: rank, world, device, collectives.

torchrun exports ``RANK``, ``WORLD_SIZE`` (processes, all nodes), ``LOCAL_RANK`` and
``LOCAL_WORLD_SIZE`` to each worker. GPUs use NCCL, one device per local rank; CPU runs use gloo
(``train.num_gpus`` CPU processes per node), which is how the multi-process paths are tested on
machines without GPUs. Collectives time out after ``RTDETR_COLLECTIVE_TIMEOUT`` seconds
(default 1800) so a vanished peer ends the run instead of hanging it forever.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from rtdetr_trainer.errors import LaunchError

COLLECTIVE_TIMEOUT_ENV = "RTDETR_COLLECTIVE_TIMEOUT"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{name}={value!r} is not an integer") from None


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalars over all ranks (for logging)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        t /= self.world_size
        return dict(zip(keys, t.tolist(), strict=True))

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def shutdown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(*, use_cuda: bool | None = None) -> DistContext:
    """Join the process group described by torchrun's environment (a no-op for one process)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", 1)
    cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise LaunchError(
                f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible "
                "(train.num_gpus is larger than the GPUs this node has)"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    ctx = DistContext(rank, world, local_rank, local_world, device, None)
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        timeout = datetime.timedelta(seconds=_env_int(COLLECTIVE_TIMEOUT_ENV, 1800))
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timeout}
        if cuda:
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
        ctx.backend = backend
    return ctx
