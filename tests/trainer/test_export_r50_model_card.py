"""The model card's export, as documented: ResNet-50 at 640x640, the model card's spec and its FP16
command.

A freshly initialised R50/7-class model saved in TAO's checkpoint layout is exported with
``examples/specs/rtdetr_r50_warehouse.yaml`` and the model card's overrides; the model card's Model
Optimizer
command then converts the result to FP16 (CPU only).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from rtdetr_spec import WAREHOUSE_CLASSES, load_experiment
from rtdetr_spec.artifacts import ExportManifest
from rtdetr_trainer.export import run
from rtdetr_trainer.export.fp16 import MODEL_CARD_FP16_COMMAND
from rtdetr_trainer.export.verify import FP16_TOLERANCE, probe_batch, query_agreement, run_onnx
from rtdetr_trainer.model import build_model
from rtdetr_trainer.model.weights import to_tao_state_dict
from tests.trainer._export_support import warehouse_class_map

ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD_SPEC = ROOT / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"


@pytest.mark.slow
def test_model_card_export_of_a_tao_layout_r50_checkpoint_and_its_fp16_command(tmp_path) -> None:
    base = load_experiment(MODEL_CARD_SPEC)
    torch.manual_seed(0)
    model = build_model(base.model, base.dataset.num_classes, (640, 640))
    ckpt = tmp_path / "rtdetr_r50_warehouse.pth"
    torch.save(
        {
            "state_dict": to_tao_state_dict(model),
            "tao_model": "rtdetr",
            "epoch": 0,
            "class_map": warehouse_class_map(),
        },
        ckpt,
    )
    del model
    spec = load_experiment(
        MODEL_CARD_SPEC,
        [
            f"export.checkpoint={ckpt}",
            "export.onnx_file=rtdetr_r50_warehouse.onnx",
            f"results_dir={tmp_path / 'results'}",
        ],
    )
    summary = run(spec)
    out = tmp_path / "results" / "export"
    fp32 = out / "rtdetr_r50_warehouse.onnx"
    assert summary.artifacts["onnx"] == str(fp32)
    # The export's own check against PyTorch (batch 2). Measured: logits within 2e-6, boxes
    # within 1e-4 px.
    assert summary.metrics["onnx_query_agreement"] == 1.0
    assert summary.metrics["onnx_max_score_diff"] <= 1e-5
    assert summary.metrics["onnx_max_box_diff_px"] <= 0.01

    graph = onnx.load(str(fp32))
    onnx.checker.check_model(graph)
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 17)]
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*graph.graph.input, *graph.graph.output)
    }
    assert dims == {
        "inputs": ["batch", 3, 640, 640],
        "pred_logits": ["batch", 300, 8],
        "pred_boxes": ["batch", 300, 4],
    }
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    del graph

    x = probe_batch(2, 640, 640)
    logits, boxes = run_onnx(fp32, x)
    assert logits.shape == (2, 300, 8) and boxes.shape == (2, 300, 4)
    assert np.isfinite(logits).all() and ((boxes >= 0) & (boxes <= 1)).all()

    manifest = ExportManifest.read(fp32)
    config = yaml.safe_load((out / "nvdsinfer_config.yaml").read_text())["property"]
    labels = (out / "labels.txt").read_text().splitlines()
    assert config["onnx-file"] == fp32.name and config["infer-dims"] == "3;640;640"
    assert config["num-detected-classes"] == len(labels) == manifest.num_logits == 8
    assert labels == ["background", *WAREHOUSE_CLASSES] == manifest.class_names
    assert config["output-blob-names"] == "pred_logits;pred_boxes"

    fp16 = out / "rtdetr_r50_warehouse_fp16.onnx"
    command = MODEL_CARD_FP16_COMMAND.format(src=fp32, dst=fp16).split()
    done = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    onnx.checker.check_model(str(fp16))
    logits16, boxes16 = run_onnx(fp16, x)
    agreement = query_agreement((logits, boxes), (logits16, boxes16), FP16_TOLERANCE)
    # Measured: 93 % of queries paired within tolerance (the rest are proposals swapped at the
    # top-300 boundary), logits within 0.0022, boxes within 0.125 px.
    assert agreement.ok(FP16_TOLERANCE), agreement.describe(640)
    assert agreement.max_score_diff <= 0.005 and agreement.max_box_diff * 640 <= 0.5
