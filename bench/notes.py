"""The fixed prose of docs/benchmarks.md. No figures here: numbers come from the run only."""

from __future__ import annotations

import statistics
from typing import Any

METHOD = """\
How it is measured: every cell is a fresh process (`python -m bench.cells`) that builds the
model, runs the warm-up iterations untimed (the first call is reported separately where it
includes compilation), then times each iteration with `time.perf_counter`; tables give the median
(and min/max) over the timed iterations and images/s = batch / median. Inputs are random
`[B, 3, H, W]` tensors in [0, 1] from a fixed seed; inference runs under `torch.inference_mode()`;
bf16 means `torch.autocast("cpu", torch.bfloat16)` for both models. Ours is
`rtdetr_trainer.model.build_model` with the spec's defaults (ResNet-50, 300 queries, 6 decoder
layers, 7 classes). The peer is transformers' `RTDetrForObjectDetection(RTDetrConfig(num_labels=7))`
with random weights and no download: the same encoder/decoder shape, but its backbone is the
original RT-DETR's ResNet-50-vd (three 3x3 stem convolutions, average-pool shortcuts), which
costs a little more than TAO's plain ResNet-50 that we reproduce. Peers are installed from
`bench/requirements.txt` (hash-pinned) into a cache directory outside the repository and are
never part of the product's lock.

Memory format: our model stores its convolution weights channels_last and converts its input
(the product's default, see below). The peer is measured as its users run it (NCHW, the
"transformers" columns) and, for transparency, with the same channels_last conversion of model
and input ("transformers channels_last"); the targets are stated against the former and the
ratio against the latter is shown next to them."""

TRAINING = """\
One step = `zero_grad`, forward with targets (denoising on: 100 denoising queries), the full
loss (ours: `Criterion` + `total_loss`, Hungarian matching of every decoder layer and the encoder
proposals; transformers: `outputs.loss` with `labels`), backward, optimizer step. Both models are
set up as a fine-tuning run is: backbone batch norms frozen and the stem frozen (ours through
`model.pretrained_backbone_path`, as TAO; the peer's `freeze_backbone_batch_norms` default plus
its embedder's parameters frozen). Targets are 4-12 random boxes per image, identical for both.
Ours uses the trainer's optimizer (`rtdetr_trainer.engine.optim.build_optimizer`, TAO's parameter
groups) when it is in the checkout, else fused AdamW; the peer uses fused AdamW, the default of
transformers' `Trainer` with this torch. Not included: gradient clipping and EMA, which the
trainer adds on top of this step."""

DATA = """\
{images} synthetic warehouse images of {width}x{height} (`rtdetr_trainer.data.synth`), stored
three ways; the trainer's `TrainDataset` with `TrainTransform({size}, {size})` (TAO's photometric
distortion, zoom-out, IoU crop, flip, resize), `TrainSampler`, `collate`, batch {batch}, one
epoch. images/s excludes the first batch (worker start-up, shown separately). Decode only =
`ImageLoader.load` over the whole set in the main process."""

MISSED = """\
Where a target is missed, the profiles below say why. Share of our self CPU time spent in
convolution operators (oneDNN forward and backward, the same library calls in both
implementations; from the top rows, so a lower bound): {shares}. Both models run the same
convolutions (the peer's ResNet-50-vd a few more), so in eager fp32 little is left to win in the
code around them; the gains come from the memory format (bf16 with AMX needs NHWC), from folding
the fixed norms into the convolutions, from ahead-of-time engines (onnxruntime, torch.compile)
and, for training, from precision."""

EVAL_SAME = """\
The two evaluators agree to 1e-6 on every stat and every class, so faster-coco-eval is a drop-in
candidate for the trainer's evaluation (it is not a product dependency yet: adding it is a lock
change)."""

EVAL_DIFFERENT = """\
The evaluators do NOT agree to 1e-6, so the product stays on pycocotools."""

DDP = """\
Same global batch and the same two cores: one process with both threads against two processes
(gloo, `DistributedDataParallel` as the trainer wraps it) with one thread each and half the batch.
Efficiency 1.0 means DDP costs nothing on top of the split; above 1.0, two single-threaded
processes use the cores better than one two-threaded process."""

FIXES = """\
Hot spots found in the profiles and fixed in `trainer/rtdetr_trainer/model/` (interfaces and
state-dict keys unchanged; `tests/trainer/test_model_fold.py` checks every rewrite against the
plain formulation, values and gradients):

1. Memory format. oneDNN's bf16 kernels (AMX on this CPU) and its fp32 kernels run NHWC; with
   NCHW tensors every convolution pays layout conversions, and bf16 autocast gained almost
   nothing over fp32. `RTDETR` now stores its convolution weights channels_last and converts the
   input in `forward` (same values and keys; checkpoints load either way).
2. Conv + batch norm. A `FrozenBatchNorm2d` (every backbone norm when fine-tuning from ImageNet
   weights, as TAO does) and any batch norm in eval mode is a per-channel affine map; it is now
   folded into the preceding convolution's weight and bias at each call (`layers.conv_norm`), so
   the activation is not rewritten twice more in forward and backward. In eval mode the two
   RepVGG branches of the encoder are merged into one 3x3 convolution. ONNX export traces the
   unfolded graph as before (the exporter folds it).
3. Deformable attention. The value projection now writes straight into `grid_sample`'s
   `[B*M, Dh, S]` layout with one GEMM over the transposed memory (no permuted copy of the whole
   memory in forward and again in backward); levels are taken with `split`, whose backward is
   one concatenation, instead of slicing, whose backward zero-filled a full-size gradient per
   level; all sampling grids are permuted in one copy.

Changes measured here (same run, same machine, same load; "before" is the code at the baseline
commit extracted with `git archive`, "after" the current commit):"""

GPU = """\
### GPU (H100: 76 streams at 30 FPS, about 2280 images/s with TensorRT FP16, per the model card)

Not measured on this machine: it has no GPU. No GPU figure appears in this document. The model
card's serving figure is TensorRT FP16 through DeepStream, which this suite does not run; the
suite's GPU cells (PyTorch fp16/bf16, CUDA graphs, onnxruntime CUDA, transformers fp16, bf16
training) are written against the real APIs and run only with `--device cuda`."""

REPRODUCE = """\
### How to reproduce on a GPU

On a machine with an NVIDIA GPU, a CUDA build of torch in `.venv` and onnxruntime-gpu (the lock's
`onnxruntime-gpu` has the CUDA provider): `.venv/bin/python -m bench --device cuda
--output docs/benchmarks-gpu.md`. Inference then adds fp16 and a CUDA-graph replay of our fp16
forward, training runs fp32 and bf16 autocast, and the DDP section is skipped (it is a CPU/gloo
measurement). Compare the training images/s of one GPU with the data-pipeline images/s of the
CPU cores that will feed it; the data target is at least twice the GPU's training rate."""


def data_target(res: dict[str, Any]) -> str:
    """The data pipeline against the training rate actually measured in this run."""
    secs = res["sections"]
    data = secs.get("data", {}).get("result", {})
    train = secs.get("training", {}).get("cells", [])
    rows = data.get("rows") or []
    rates = [
        c["spec"]["batch"] / statistics.median(c["times"])
        for c in train
        if c["spec"]["impl"] == "ours" and "times" in c
    ]
    if not rows or not rates:
        return (
            "Data pipeline: not compared (the data or training section was not measured in "
            "this run). The GPU comparison is pending: no GPU was measured."
        )
    best = max(rows, key=lambda r: r["images_per_s"])
    fastest_train = max(rates)
    ratio = best["images_per_s"] / fastest_train
    return (
        f"Data pipeline: best {best['images_per_s']:.1f} images/s ({best['store']}, "
        f"{best['workers']} workers) against our fastest CPU training step in this run "
        f"({fastest_train:.3f} images/s): {ratio:.0f}x (target >= 2x: "
        f"{'met' if ratio >= 2 else 'missed'} on CPU). The comparison with one GPU's training "
        "rate is pending: no GPU was measured."
    )
