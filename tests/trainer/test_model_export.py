"""ONNX export of the export view: standard ops only, dynamic batch, onnxruntime agrees."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rtdetr_spec.model import ModelConfig
from rtdetr_trainer.model import build_model
from tests.trainer._model_fixtures import one_thread, small_config

__all__ = ["one_thread"]

# float32 on CPU; differences come from operator order only.
ATOL_LOGITS = 1e-4
ATOL_BOXES = 1e-5


def test_export_wrapper_returns_the_eval_outputs():
    torch.manual_seed(0)
    model = build_model(small_config(), 7, (128, 128))
    model.train()
    wrapper = model.export_module()
    wrapper.train()
    assert not model.training
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        logits, boxes = wrapper(x)
        ref = model(x)
    assert torch.equal(logits, ref["pred_logits"]) and torch.equal(boxes, ref["pred_boxes"])


@pytest.mark.slow
def test_onnx_export_is_standard_and_matches_onnxruntime_at_batch_1_and_3(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet_18"), 7, (128, 128))
    wrapper = model.export_module()
    path = tmp_path / "rtdetr.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints (static H, W)
        torch.onnx.export(
            wrapper,
            (torch.rand(1, 3, 128, 128),),
            str(path),
            input_names=["inputs"],
            output_names=["pred_logits", "pred_boxes"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in ("inputs", "pred_logits", "pred_boxes")},
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert {op.domain for op in graph.opset_import} <= {"", "ai.onnx"}
    assert {op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")} == {17}
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    assert "GridSample" in {n.op_type for n in graph.graph.node}

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, 128, 128)
        with torch.no_grad():
            want_logits, want_boxes = wrapper(x)
        logits, boxes = session.run(None, {"inputs": x.numpy()})
        assert logits.shape == (batch, 300, 7) and boxes.shape == (batch, 300, 4)
        np.testing.assert_allclose(logits, want_logits.numpy(), atol=ATOL_LOGITS, rtol=0)
        np.testing.assert_allclose(boxes, want_boxes.numpy(), atol=ATOL_BOXES, rtol=0)
