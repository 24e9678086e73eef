"""What a run measures: the cells of each section for ``--quick``, full and ``--micro`` runs.

Iteration counts are per batch size because one R50 forward at batch 32 and 640x640 takes tens
of seconds on two CPU cores; every count is written into the report next to its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SECTIONS = ("inference", "backbones", "training", "data", "evaluation", "ddp", "profile")


@dataclass(frozen=True)
class Mode:
    """Sizes and repetitions of one kind of run."""

    name: str
    depth: int = 50
    size: int = 640
    queries: int = 300
    batches: tuple[int, ...] = (1, 8, 32)
    #: batch -> (warm-up iterations, timed iterations)
    infer_iters: dict[int, tuple[int, int]] = field(default_factory=dict)
    compile_batches: tuple[int, ...] = (1, 8, 32)
    precisions: tuple[str, ...] = ("fp32", "bf16")
    profiles: tuple[str, ...] = ("infer", "train")
    train_batch: int = 2
    train_iters: tuple[int, int] = (1, 3)
    data: dict[str, Any] = field(default_factory=dict)
    eval_images: int = 500
    eval_repeats: int = 3
    ddp_global_batch: int = 2
    ddp_iters: tuple[int, int] = (1, 3)
    profile_batch: int = 1


#: The data section's camera-like frames (1280x720, the trainer's 640 input), by images per mode.
_DATA_720P: dict[str, Any] = {
    "width": 1280,
    "height": 720,
    "batch": 4,
    "workers": [0, 1, 2],
    "size": 640,
    "epochs": 1,
}

QUICK = Mode(
    name="quick",
    infer_iters={1: (2, 5), 8: (1, 3), 32: (1, 2)},
    compile_batches=(1, 8),
    data={**_DATA_720P, "images": 48},
)
FULL = Mode(
    name="full",
    infer_iters={1: (3, 10), 8: (2, 5), 32: (1, 3)},
    train_iters=(2, 5),
    data={**_DATA_720P, "images": 160},
    eval_images=2000,
    ddp_iters=(2, 5),
)
#: The smoke-test configuration: every code path, seconds of work, numbers meaningless.
MICRO = Mode(
    name="micro",
    depth=18,
    size=64,
    queries=30,
    batches=(1,),
    infer_iters={1: (1, 1)},
    compile_batches=(),
    precisions=("fp32",),
    profiles=("infer",),
    train_batch=2,
    train_iters=(1, 1),
    data={
        "images": 6,
        "width": 128,
        "height": 96,
        "batch": 2,
        "workers": [0, 1],
        "size": 64,
        "epochs": 1,
    },
    eval_images=20,
    eval_repeats=1,
    ddp_global_batch=2,
    ddp_iters=(1, 1),
)
MODES = {m.name: m for m in (QUICK, FULL, MICRO)}


def skipped(mode: Mode) -> list[str]:
    """Cells this mode does not run, with the reason, for the report."""
    out = []
    missing = [b for b in mode.batches if b not in mode.compile_batches]
    if missing:
        out.append(
            f"torch.compile at batch {', '.join(map(str, missing))}: not run in `{mode.name}` "
            "mode; compiling the R50 detector for one batch size takes minutes on two cores "
            "(the first-call times below show it), the full mode runs every batch size"
        )
    return out


def inference_cells(mode: Mode, device: str, threads: int, onnx: str | None) -> list[dict]:
    """Ours (eager fp32/bf16, compiled fp32), onnxruntime fp32, transformers fp32/bf16; on a
    GPU also fp16 and CUDA graphs."""
    impls: list[tuple[str, str, dict[str, Any]]] = [
        (impl, p, {}) for impl in ("ours", "hf") for p in mode.precisions
    ]
    # The peer as its users run it (NCHW) and with the memory format ours uses (channels_last).
    impls += [("hf", p, {"channels_last": True}) for p in mode.precisions]
    if onnx:
        impls.insert(len(mode.precisions), ("ort", "fp32", {"onnx": onnx}))
    if device == "cuda":
        impls += [("ours", "fp16", {}), ("ours", "fp16", {"cuda_graphs": True}), ("hf", "fp16", {})]
    cells = []
    for batch in mode.batches:
        warmup, iters = mode.infer_iters[batch]
        for impl, precision, extra in impls:
            cells.append(
                _cell(
                    "infer", impl, precision, batch, warmup, iters, mode, device, threads, **extra
                )
            )
        if batch in mode.compile_batches:
            cells.append(
                _cell("infer", "ours-compile", "fp32", batch, warmup, iters, mode, device, threads)
            )
    return cells


def backbone_cells(mode: Mode, device: str, threads: int) -> list[dict]:
    """Our detector with the mode's ResNet and with EfficientViT-L2, eager, batch 1, each
    precision: the same encoder and decoder, so the difference is the backbone."""
    warmup, iters = mode.infer_iters[1]
    return [
        _cell("infer", "ours", p, 1, warmup, iters, mode, device, threads, backbone=b)
        for b in (f"resnet_{mode.depth}", "efficientvit_l2")
        for p in mode.precisions
    ]


def training_cells(mode: Mode, device: str, threads: int) -> list[dict]:
    warmup, iters = mode.train_iters
    cells = []
    for p in mode.precisions:
        for impl, extra in (("ours", {}), ("hf", {}), ("hf", {"channels_last": True})):
            cells.append(_cell("train", impl, p, mode.train_batch, warmup, iters, mode, device,
                               threads, **extra))  # fmt: skip
    return cells


def profile_cells(mode: Mode, device: str, threads: int) -> list[dict]:
    out = []
    batches = {"infer": mode.profile_batch, "train": mode.train_batch}
    for what in mode.profiles:
        batch = batches[what]
        cell = _cell("profile", "ours", "fp32", batch, 1, 1, mode, device, threads)
        cell.update(mode=what, top=15)
        out.append(cell)
    return out


def ddp_specs(mode: Mode, threads: int) -> list[dict]:
    warmup, iters = mode.ddp_iters
    base = {
        "threads": threads,
        "global_batch": mode.ddp_global_batch,
        "size": mode.size,
        "depth": mode.depth,
        "queries": mode.queries,
        "precision": "fp32",
        "warmup": warmup,
        "iters": iters,
    }
    return [{**base, "world": 1}, {**base, "world": 2}]


def _cell(
    kind: str,
    impl: str,
    precision: str,
    batch: int,
    warmup: int,
    iters: int,
    mode: Mode,
    device: str,
    threads: int,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "impl": impl,
        "precision": precision,
        "batch": batch,
        "size": mode.size,
        "depth": mode.depth,
        "queries": mode.queries,
        "warmup": warmup,
        "iters": iters,
        "threads": threads,
        "device": device,
        **extra,
    }
