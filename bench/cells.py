"""One measured cell per process: ``python -m bench.cells '<json spec>'`` prints one JSON line.

Spec keys: ``kind`` (``infer``, ``train``, ``profile``), ``impl`` (``ours``, ``ours-compile``,
``ort``, ``hf``), ``precision`` (``fp32``, ``bf16``, ``fp16``), ``batch``, ``size``, ``depth``,
``queries`` (300; fewer only for tiny inputs), optional ``backbone`` (``efficientvit_l2``
instead of the ResNet of ``depth``), ``warmup``, ``iters``, ``threads``, ``device``
(``cpu``/``cuda``), optional ``onnx`` (file for ``ort``), ``cuda_graphs`` (GPU only), ``top``
(profile rows).

Result: per-iteration wall seconds ``times`` (after ``warmup`` untimed iterations) and process
CPU seconds ``cpu_times`` (all threads; a load-independent cross-check), the first
call's seconds (``first_s``: compilation for compiled cells), peak RSS, the load average before
and after, and the code that ran (``code``: the path ``rtdetr_trainer`` was imported from).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.env import activate_peers

DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], Any], warmup: int, iters: int, device: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        fn()
    _sync(device)
    times, cpu = [], []
    for _ in range(iters):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"first_s": first, "times": times, "cpu_times": cpu}


def _autocast(spec: dict[str, Any]) -> Any:
    import torch

    name = DTYPES[spec["precision"]]
    dtype = getattr(torch, name) if name else torch.float32
    return torch.autocast(spec["device"], dtype=dtype, enabled=name is not None)


def _infer_fn(spec: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    import torch

    from bench import models

    impl, device, batch, size = spec["impl"], spec["device"], spec["batch"], spec["size"]
    info: dict[str, Any] = {}
    if impl == "ort":
        import numpy as np
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = spec["threads"]
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        session = ort.InferenceSession(spec["onnx"], opts, providers=providers)
        x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
        info["providers"] = session.get_providers()
        return (lambda: session.run(None, {"inputs": x})), info

    ours = impl.startswith("ours")
    model = (
        models.build_ours(
            spec["depth"], size, train=False, queries=spec["queries"], backbone=spec.get("backbone")
        )
        if ours
        else models.build_hf(spec["depth"], train=False, queries=spec["queries"])
    ).to(device)
    info["params"] = sum(p.numel() for p in model.parameters())
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    if spec.get("channels_last"):
        if spec["channels_last"] != "input":
            model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    call: Callable[[], Any] = (lambda: model(x)) if ours else (lambda: model(pixel_values=x))
    if impl.endswith("-compile"):
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant-fold weights: conv+BN folding, prepacking
        compiled = torch.compile(model)
        call = (lambda: compiled(x)) if ours else (lambda: compiled(pixel_values=x))

    def run() -> Any:
        with torch.inference_mode(), _autocast(spec):
            return call()

    if spec.get("cuda_graphs"):
        run = _cuda_graph(run)
    return run, info


def _cuda_graph(run: Callable[[], Any]) -> Callable[[], Any]:
    """Capture one forward in a CUDA graph (static input buffer) and replay it."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    return graph.replay


def _optimizer(model: Any, ours: bool, device: str) -> Any:
    """The product's optimizer for ours; transformers Trainer's default (fused AdamW) for hf."""
    import torch

    if ours:
        try:
            from rtdetr_spec.train import OptimConfig
            from rtdetr_trainer.engine.optim import build_optimizer
        except ImportError:
            build_optimizer = None
        if build_optimizer is not None:
            return build_optimizer(model, OptimConfig())
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, fused=True)


def _train_fn(spec: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    import torch

    from bench import models

    impl, device, batch, size = spec["impl"], spec["device"], spec["batch"], spec["size"]
    ours = impl == "ours"
    depth, queries = spec["depth"], spec["queries"]
    model = (
        models.build_ours(depth, size, train=True, queries=queries)
        if ours
        else models.build_hf(depth, train=True, queries=queries)
    ).to(device)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    targets = models.synthetic_targets(batch)
    if spec.get("channels_last"):
        if spec["channels_last"] != "input":
            model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = _optimizer(model, ours, device)
    info: dict[str, Any] = {"optimizer": _describe_optimizer(opt)}
    if ours:
        from rtdetr_trainer.model import total_loss

        criterion = models.build_criterion(depth)
        dev_targets = [{k: v.to(device) for k, v in t.items()} for t in targets]

        def loss_fn() -> Any:
            out = model(x, dev_targets)
            return total_loss(criterion(out, dev_targets))
    else:
        labels = models.hf_labels(targets, torch.device(device))

        def loss_fn() -> Any:
            return model(pixel_values=x, labels=labels).loss

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(spec):
            loss = loss_fn()
        loss.backward()
        opt.step()

    return step, info


def _describe_optimizer(opt: Any) -> str:
    d = opt.defaults
    mode = "fused" if d.get("fused") else "foreach" if d.get("foreach") else "default"
    return f"{type(opt).__name__}({mode}, {len(opt.param_groups)} param groups)"


def _profile(spec: dict[str, Any]) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    fn, info = _train_fn(spec) if spec["mode"] == "train" else _infer_fn(spec)
    for _ in range(spec["warmup"]):
        fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if spec["device"] == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        _sync(spec["device"])
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: spec["top"]]
    table = [
        {
            "name": e.key,
            "self_ms": e.self_cpu_time_total / 1000,
            "self_pct": 100 * e.self_cpu_time_total / total,
            "total_ms": e.cpu_time_total / 1000,
            "calls": e.count,
        }
        for e in rows
    ]
    return {**info, "profiled_s": wall, "self_total_ms": total / 1000, "top": table}


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    activate_peers()
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    load_before = os.getloadavg()
    import rtdetr_trainer

    if spec["kind"] == "profile":
        result = _profile(spec)
    else:
        fn, info = _train_fn(spec) if spec["kind"] == "train" else _infer_fn(spec)
        result = {**info, **_time(fn, spec["warmup"], spec["iters"], spec["device"])}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    result.update(
        spec=spec,
        peak_rss_gib=round(rss, 2),
        load_before=load_before,
        load_after=os.getloadavg(),
        code=str(Path(rtdetr_trainer.__file__).parent),
        torch_threads=torch.get_num_threads(),
    )
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result = run_cell(spec)
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
