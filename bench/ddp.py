"""Two-process DDP scaling on CPU (gloo) at a fixed global batch and a fixed core budget.

``world=1``: one process with all ``threads``, the plain model (as the product trains on one
device). ``world=2``: two processes (``torch.multiprocessing.spawn``), each with
``threads // 2`` intra-op threads and half the global batch, ``DistributedDataParallel`` over
gloo as the product's trainer wraps it (``find_unused_parameters=True``). Every timed step is
fenced by a barrier, so rank 0's wall time is the step time of the slowest rank.

Run as ``python -m bench.ddp '<json spec>'`` (keys ``world``, ``threads``, ``global_batch``,
``size``, ``depth``, ``queries``, ``precision``, ``warmup``, ``iters``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, spec: dict[str, Any], port: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bench import models
    from bench.cells import _autocast, _optimizer
    from rtdetr_trainer.model import total_loss

    world = spec["world"]
    torch.set_num_threads(max(spec["threads"] // world, 1))
    torch.manual_seed(0)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    per_rank = spec["global_batch"] // world
    model = models.build_ours(spec["depth"], spec["size"], train=True, queries=spec["queries"])
    criterion = models.build_criterion(spec["depth"])
    opt = _optimizer(model, True, "cpu")
    net: torch.nn.Module = model
    if world > 1:
        net = DistributedDataParallel(model, find_unused_parameters=True)
    g = torch.Generator().manual_seed(rank)
    x = torch.rand(per_rank, 3, spec["size"], spec["size"], generator=g)
    targets = models.synthetic_targets(per_rank, seed=rank)
    cell = {"precision": spec["precision"], "device": "cpu"}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(cell):
            loss = total_loss(criterion(net(x, targets), targets))
        loss.backward()
        opt.step()
        if world > 1:
            dist.barrier()

    for _ in range(spec["warmup"]):
        step()
    times = []
    for _ in range(spec["iters"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps({"times": times}))
    if world > 1:
        dist.destroy_process_group()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import torch.multiprocessing as mp

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.json")
        if spec["world"] == 1:
            _worker(0, spec, 0, out)
        else:
            mp.spawn(_worker, args=(spec, _free_port(), out), nprocs=spec["world"], join=True)
        result = json.loads(Path(out).read_text())
    result.update(spec=spec, load_before=load_before, load_after=os.getloadavg())
    return result


if __name__ == "__main__":
    res = run(json.loads(sys.argv[1]))
    sys.stdout.write("BENCH-RESULT " + json.dumps(res) + "\n")
