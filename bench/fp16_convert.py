"""Benchmark: ``export.fp16``'s Model Optimizer conversion, with and without the one-pass cleanup.

    .venv/bin/python bench/fp16_convert.py            # R50 at 640 and EfficientViT-L2 at 256
    .venv/bin/python bench/fp16_convert.py --quick    # seconds: R18 at 64

For each model: a freshly initialised 7-class detector in TAO's checkpoint layout goes through
``rtdetr_trainer.export.run`` (FP32 ONNX), then the FP32 file is converted twice in this
process by ``convert_to_fp16``: once as ``export.fp16`` runs it (the one-pass dead-end
cleanup of ``rtdetr_trainer/export/fp16_cleanup.py``) and once with Model Optimizer's own
method. Printed: node counts, both wall times, and whether the two FP16 graphs are equal (they
must be; tests/trainer/test_export_fp16.py holds that). One JSON object, then a Markdown table
for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import onnx
import torch

from rtdetr_spec import WAREHOUSE_CLASSES, load_experiment
from rtdetr_trainer.export import fp16, run
from rtdetr_trainer.model import build_model
from rtdetr_trainer.model.weights import to_tao_state_dict

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"
#: (name, spec file, input size, extra overrides) per run mode.
MODELS = {
    "full": [
        ("r50", "rtdetr_r50_warehouse.yaml", 640, []),
        ("efficientvit_l2", "rtdetr_effvit_l2_warehouse.yaml", 256, []),
    ],
    "quick": [
        (
            "r18",
            "rtdetr_r50_warehouse.yaml",
            64,
            # one decoder layer, narrow: the smallest graph that still has every kind of node
            [
                "model.backbone=resnet_18",
                "model.num_queries=60",
                "model.num_select=60",
                "model.dec_layers=1",
                "model.hidden_dim=64",
                "model.feat_channels=[64,64,64]",
                "model.dim_feedforward=128",
            ],
        )
    ],
}


def _fp32_onnx(work: Path, name: str, spec_file: str, size: int, extra: list[str]) -> Path:
    """Export a fresh TAO-layout checkpoint of the spec's model to ``work/<name>/export``."""
    overrides = [*extra, f"dataset.augmentation.eval_spatial_size=[{size},{size}]"]
    base = load_experiment(SPECS / spec_file, overrides)
    torch.manual_seed(0)
    model = build_model(base.model, len(WAREHOUSE_CLASSES), (size, size))
    classes = [
        {"index": i, "category_id": i + 1, "name": n} for i, n in enumerate(WAREHOUSE_CLASSES)
    ]
    ckpt = work / f"{name}.pth"
    class_map = {"num_classes": len(WAREHOUSE_CLASSES), "classes": classes}
    torch.save(
        {"state_dict": to_tao_state_dict(model), "tao_model": "rtdetr", "class_map": class_map},
        ckpt,
    )
    spec = load_experiment(
        SPECS / spec_file,
        [
            *overrides,
            f"export.checkpoint={ckpt}",
            f"export.onnx_file={name}.onnx",
            f"export.input_height={size}",
            f"export.input_width={size}",
            f"results_dir={work / name}",
        ],
    )
    run(spec)
    return work / name / "export" / f"{name}.onnx"


def _convert(src: Path, dst: Path, library_only: bool) -> float:
    saved = fp16.linear_dead_end_cleanup
    if library_only:
        fp16.linear_dead_end_cleanup = contextlib.nullcontext
    try:
        start = time.perf_counter()
        fp16.convert_to_fp16(src, dst)
        return time.perf_counter() - start
    finally:
        fp16.linear_dead_end_cleanup = saved


def measure(mode: str, work: Path) -> list[dict]:
    import modelopt.onnx.autocast  # noqa: F401 - imported once here, not inside the first timing

    rows = []
    for name, spec_file, size, extra in MODELS[mode]:
        src = _fp32_onnx(work, name, spec_file, size, extra)
        ours, theirs = work / f"{name}.one-pass.onnx", work / f"{name}.library.onnx"
        t_ours = _convert(src, ours, library_only=False)
        t_theirs = _convert(src, theirs, library_only=True)
        g_ours, g_theirs = onnx.load(str(ours)).graph, onnx.load(str(theirs)).graph
        rows.append(
            {
                "model": name,
                "size": size,
                "fp32_nodes": len(onnx.load(str(src)).graph.node),
                "fp16_nodes": len(g_ours.node),
                "one_pass_s": round(t_ours, 1),
                "library_s": round(t_theirs, 1),
                "identical": g_ours == g_theirs,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    out = [
        "| Model | Input | Nodes FP32 / FP16 | Model Optimizer alone | With the one-pass cleanup "
        "| Same graph |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        same = "yes" if r["identical"] else "NO"
        out.append(
            f"| {r['model']} | {r['size']}x{r['size']} | {r['fp32_nodes']} / {r['fp16_nodes']} "
            f"| {r['library_s']:.1f} s | {r['one_pass_s']:.1f} s | {same} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="R18 at 64x64 (seconds), not R50/L2")
    ap.add_argument("--json-out", type=Path, help="also write the JSON result here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="fp16-bench-") as work:
        rows = measure("quick" if args.quick else "full", Path(work))
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": 2},
        "versions": {
            p: version(p) for p in ("torch", "onnx", "onnxruntime-gpu", "nvidia-modelopt")
        },
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    print(table(rows))
    if args.json_out:
        args.json_out.write_text(text)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
