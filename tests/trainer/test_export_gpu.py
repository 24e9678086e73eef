"""Export traced on a CUDA device gives the same graph contract and outputs as on the CPU, and the
ONNX predictor runs on onnxruntime's CUDA provider. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from rtdetr_trainer.evaluation.onnx_predictor import OnnxPredictor
from rtdetr_trainer.export import run
from rtdetr_trainer.export.verify import FP32_TOLERANCE, probe_batch, query_agreement, run_onnx
from tests.trainer._export_support import SIZE, make_checkpoint, small_spec, warehouse_class_map

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_export_on_gpu_matches_export_on_cpu(tmp_path) -> None:
    ckpt = tmp_path / "m.pth"
    gpu_spec = small_spec(tmp_path / "gpu", ckpt, gpu_id=0)
    make_checkpoint(ckpt, gpu_spec, class_map=warehouse_class_map())
    summary = run(gpu_spec)
    assert summary.metrics["onnx_query_agreement"] >= FP32_TOLERANCE.min_fraction
    run(small_spec(tmp_path / "cpu", ckpt, on_cpu=True))
    on_gpu = tmp_path / "gpu" / "export" / "model.onnx"
    on_cpu = tmp_path / "cpu" / "export" / "model.onnx"
    ops = [n.op_type for n in onnx.load(str(on_gpu), load_external_data=False).graph.node]
    assert "GridSample" in ops and not any("Plugin" in op for op in ops)
    x = probe_batch(2, SIZE, SIZE)
    agreement = query_agreement(run_onnx(on_cpu, x), run_onnx(on_gpu, x), FP32_TOLERANCE)
    assert agreement.fraction == 1.0, agreement.describe(SIZE)

    pred = OnnxPredictor(on_gpu, gpu_spec, "evaluate", device="cuda:0")
    assert pred.session.get_providers()[0] == "CUDAExecutionProvider"
    logits, boxes = pred.forward(x)
    on_device = query_agreement(run_onnx(on_gpu, x), (logits, boxes), FP32_TOLERANCE)
    assert on_device.ok(FP32_TOLERANCE), on_device.describe(SIZE)
    assert np.isfinite(logits).all()
