"""``make demo-local``: synthetic data -> ``rtdetr train`` -> ``rtdetr evaluate`` -> AP50 table.

The cluster-free demo, for machines where a real node cannot run (``make demo`` runs the same
fine-tune through the operator on the local cluster). Everything goes through the real
``rtdetr`` CLI with a spec derived from the model card's ResNet-50 example
(``examples/specs/rtdetr_r50_warehouse.yaml``). That recipe needs GPUs; to finish in a few
minutes on two CPU cores the demo changes only sizes and schedule, on the command line (the
model card's values in brackets):

* ResNet-18 backbone (ResNet-50), 128-wide encoder/decoder (256), 60 queries (300), 3 decoder
  layers (6), 30 denoising queries (100): ~15 M parameters instead of 43 M;
* 160x160 input (640x640) on 160x160 synthetic scenes of at most 3 objects, batch 8 (16), fp32
  (bf16), 1 process, 8 epochs over 320 training images (30 epochs on real data);
* no pretrained weights (none can be downloaded here), so backbone and heads share the learning
  rate 4e-4 (1e-4 / 1e-5 for a pretrained backbone), 100 warm-up steps, decay x0.1 for the last
  epoch; validation only after the last epoch;
* lighter augmentation (photometric p 0.2, IoU crop p 0.3; TAO's 0.8/0.8 suit long schedules);
* W&B off (TAO's default is on; a machine without a W&B key gets TensorBoard files only).

The test split is never trained on; the AP50 printed is on it. Outputs land in ``--output``:
``data/``, ``spec.yaml``, ``results/{train,evaluate}/``, ``demo_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rtdetr_spec import load_experiment
from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_trainer.data.synth import CPU_DEMO_SCENES, SynthConfig, generate

MODEL_CARD_SPEC = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
)


def cpu_overrides(epochs: int, size: int) -> list[str]:
    """The demo's changes to the model card's spec (see the module docstring for why)."""
    decay_at = max(1, epochs - max(1, epochs // 5))
    return [
        "model.backbone=resnet_18",
        "model.hidden_dim=128",
        "model.feat_channels=[128,128,128]",
        "model.dim_feedforward=256",
        "model.num_queries=60",
        "model.num_select=60",
        "model.dec_layers=3",
        "model.dn_number=30",
        f"dataset.augmentation.train_spatial_size=[{size},{size}]",
        f"dataset.augmentation.eval_spatial_size=[{size},{size}]",
        f"dataset.augmentation.multi_scales=[[{size},{size}]]",
        "dataset.augmentation.distortion_prob=0.2",
        "dataset.augmentation.iou_crop_prob=0.3",
        "dataset.batch_size=8",
        "dataset.workers=1",
        f"train.num_epochs={epochs}",
        "train.num_gpus=1",
        "train.precision=fp32",
        "train.activation_checkpoint=false",
        "train.optim.lr=4e-4",
        "train.optim.lr_backbone=4e-4",
        f"train.optim.lr_steps=[{decay_at}]",
        "train.optim.warmup_steps=100",
        f"train.checkpoint_interval={epochs}",
        f"train.validation_interval={epochs}",
        f"evaluate.input_width={size}",
        f"evaluate.input_height={size}",
        "wandb.enable=false",
    ]


def _run(args: list[str], log: Path) -> float:
    """Run ``rtdetr <args>``, streaming its output to the terminal and ``log``; returns seconds."""
    cmd = [sys.executable, "-m", "rtdetr_trainer.cli", *args]
    print(f"\n$ rtdetr {' '.join(args[:2])} ... ({len(args) - 2} overrides)", flush=True)
    started = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
        code = proc.wait()
    if code:
        raise SystemExit(f"demo: `rtdetr {args[0]}` failed with exit code {code} (log: {log})")
    return time.monotonic() - started


MARKER = ".rtdetr-demo"


def _fresh(out: Path) -> None:
    """Start from scratch (training would otherwise resume the previous demo's run), but only
    in a folder the demo made: anything else is refused rather than deleted."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise SystemExit(f"demo: {out} exists and is not a demo output folder; pick another")
        for sub in ("data", "results"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m rtdetr_trainer.demo\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rtdetr_trainer.demo", description=__doc__.splitlines()[0])
    p.add_argument("--output", default="demo-output")
    p.add_argument("--num-images", type=int, default=400)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not MODEL_CARD_SPEC.exists():
        raise SystemExit(
            f"demo: the model card example spec {MODEL_CARD_SPEC} is missing (run from the repo)"
        )
    out = Path(args.output).resolve()
    _fresh(out)
    started = time.monotonic()
    load_start = round(os.getloadavg()[0], 2)
    print(f"demo: writing {args.num_images} synthetic warehouse scenes to {out / 'data'}")
    paths = generate(
        out / "data",
        SynthConfig(
            num_images=args.num_images,
            width=args.image_size,
            height=args.image_size,
            seed=args.seed,
            **CPU_DEMO_SCENES,  # type: ignore[arg-type]
        ),
    )
    synth_s = time.monotonic() - started
    images = out / "data" / "images"
    data = [
        f"dataset.train_data_sources.image_dir={images}",
        f"dataset.train_data_sources.json_file={paths['train']}",
        f"dataset.val_data_sources.image_dir={images}",
        f"dataset.val_data_sources.json_file={paths['val']}",
        f"dataset.test_data_sources.image_dir={images}",
        f"dataset.test_data_sources.json_file={paths['test']}",
        f"results_dir={out / 'results'}",
    ]
    overrides = cpu_overrides(args.epochs, args.image_size)
    spec = load_experiment(MODEL_CARD_SPEC, [*overrides, *data])  # fails early on a bad override
    from rtdetr_spec import dump_experiment

    atomic_write_text(out / "spec.yaml", dump_experiment(spec))
    env_threads = os.environ.get("OMP_NUM_THREADS")
    train_s = _run(["train", f"-e={MODEL_CARD_SPEC}", *overrides, *data], out / "train.log")
    ckpt = out / "results" / "train" / "rtdetr_model_latest.pth"
    eval_s = _run(
        ["evaluate", f"-e={MODEL_CARD_SPEC}", *overrides, *data, f"evaluate.checkpoint={ckpt}"],
        out / "evaluate.log",
    )
    metrics = json.loads((out / "results" / "evaluate" / "metrics.json").read_text())
    total = time.monotonic() - started
    summary = {
        "mAP50": metrics["mAP50"],
        "mAP": metrics["mAP"],
        "per_class_AP50": metrics["per_class_AP50"],
        "test_images": metrics["num_images"],
        "seconds": {
            "synth": round(synth_s, 1),
            "train": round(train_s, 1),
            "evaluate": round(eval_s, 1),
            "total": round(total, 1),
        },
        "cpu_count": os.cpu_count(),
        # Other work on the machine stretches the times above; this shows how busy it was.
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "omp_num_threads": env_threads,
        "overrides": overrides,
    }
    atomic_write_text(out / "demo_summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"\ndemo: test-set mAP50 {metrics['mAP50']:.3f} (mAP {metrics['mAP']:.3f}) on "
        f"{metrics['num_images']} unseen images; took {total:.0f} s "
        f"(data {synth_s:.0f} s, train {train_s:.0f} s, evaluate {eval_s:.0f} s)"
    )
    print(f"demo: spec {out / 'spec.yaml'}, results {out / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
