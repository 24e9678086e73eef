"""Export of a TAO-layout EfficientViT-L2 checkpoint with the example spec: 544x960 (the v1.0
deployable) and 640x640 (v1.0.1), ONNX against PyTorch at both, DeepStream files for both, FP16
through Model Optimizer with the attention core kept in float32, and the PyTorch model under FP16
autocast within the FP16 tolerance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from rtdetr_spec import WAREHOUSE_CLASSES, load_experiment
from rtdetr_spec.artifacts import ExportManifest
from rtdetr_trainer.export import run
from rtdetr_trainer.export.verify import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    probe_batch,
    query_agreement,
    run_onnx,
)
from rtdetr_trainer.model import build_model
from rtdetr_trainer.model.weights import to_tao_state_dict
from tests.trainer._export_support import diverse_scores, warehouse_class_map

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EFFVIT_SPEC = ROOT / "examples" / "specs" / "rtdetr_effvit_l2_warehouse.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh 7-class EfficientViT-L2 detector in TAO's layout (809 entries, ``tao_model``)."""
    root = tmp_path_factory.mktemp("effvit")
    base = load_experiment(EFFVIT_SPEC)
    torch.manual_seed(0)
    model = build_model(base.model, 7, (544, 960))
    sd = to_tao_state_dict(model)
    assert len(sd) == 809
    path = root / "rtdetr_warehouse_effvit.pth"
    torch.save({"state_dict": sd, "tao_model": "rtdetr", "class_map": warehouse_class_map()}, path)
    yield path


def _export(checkpoint: Path, results: Path, h: int, w: int, *extra: str):
    spec = load_experiment(
        EFFVIT_SPEC,
        [
            f"export.checkpoint={checkpoint}",
            "export.onnx_file=rtdetr_warehouse_effvit.onnx",
            f"export.input_height={h}",
            f"export.input_width={w}",
            f"results_dir={results}",
            *extra,
        ],
    )
    return spec, run(spec)


@pytest.mark.parametrize(("h", "w"), [(544, 960), (640, 640)])
def test_export_at_both_deployable_sizes_matches_pytorch(checkpoint, tmp_path, h, w) -> None:
    spec, summary = _export(checkpoint, tmp_path / "results", h, w)
    out = tmp_path / "results" / "export"
    path = out / "rtdetr_warehouse_effvit.onnx"
    # the export's own self-check, batch 2
    assert summary.metrics["onnx_query_agreement"] == 1.0
    assert summary.metrics["onnx_max_score_diff"] <= 1e-4

    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*graph.graph.input, *graph.graph.output)
    }
    assert dims == {
        "inputs": ["batch", 3, h, w],
        "pred_logits": ["batch", 300, 8],
        "pred_boxes": ["batch", 300, 4],
    }
    ops = {n.op_type for n in graph.graph.node}
    assert "BatchNormalization" not in ops  # every BN folded into its convolution
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    del graph

    # our own comparison on another image-like batch
    torch.manual_seed(0)
    model = build_model(spec.model, 7, (h, w))
    model.load_state_dict(
        {k.removeprefix("model.model."): v for k, v in torch.load(checkpoint)["state_dict"].items()}
    )
    x = probe_batch(1, h, w, seed=5)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x))
    logits, boxes = run_onnx(path, x)
    torch_logits = ref["pred_logits"].numpy()
    agreement = query_agreement(
        (torch_logits, ref["pred_boxes"].numpy()), (logits[..., 1:], boxes), FP32_TOLERANCE
    )
    assert agreement.ok(FP32_TOLERANCE), agreement.describe(w)
    assert agreement.fraction == 1.0 and agreement.max_box_diff < 1e-4

    manifest = ExportManifest.read(path)
    assert manifest.backbone == "efficientvit_l2"
    config = yaml.safe_load((out / "nvdsinfer_config.yaml").read_text())["property"]
    labels = (out / "labels.txt").read_text().splitlines()
    assert config["infer-dims"] == f"3;{h};{w}" and config["onnx-file"] == path.name
    assert config["num-detected-classes"] == len(labels) == 8
    assert labels == ["background", *WAREHOUSE_CLASSES]
    assert np.isfinite(logits).all()


def _float32_outputs(graph: onnx.ModelProto, pattern: str) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(graph)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    return {
        n.name: types.get(n.output[0], 0)
        for n in inferred.graph.node
        if pattern in n.name and n.op_type in ("MatMul", "Div")
    }


def test_fp16_export_keeps_the_attention_core_in_float32(checkpoint, tmp_path) -> None:
    """At 256x256 (8x8 = 64 positions: the linear attention path) to keep the CPU time small."""
    _, summary = _export(
        checkpoint,
        tmp_path / "results",
        256,
        256,
        "export.fp16=true",
        "dataset.augmentation.eval_spatial_size=[256,256]",
    )
    fp16 = tmp_path / "results" / "export" / "rtdetr_warehouse_effvit.fp16.onnx"
    assert fp16.is_file() and summary.metrics["fp16_query_agreement"] >= 0.85
    core = _float32_outputs(onnx.load(str(fp16)), "/context_module/main/")
    assert len(core) >= 8 * 3  # two MatMuls and a Div per attention block
    assert set(core.values()) == {onnx.TensorProto.FLOAT}, core
    config = yaml.safe_load(
        (tmp_path / "results" / "export" / "nvdsinfer_config.fp16.yaml").read_text()
    )["property"]
    assert config["onnx-file"] == fp16.name and config["infer-dims"] == "3;256;256"


def test_pytorch_model_under_fp16_autocast_stays_within_the_fp16_tolerance() -> None:
    """The attention runs in float32 under autocast, as TAO's; the rest in FP16 moves the
    outputs by less than the FP16 export gate of docs/export.md."""
    torch.manual_seed(0)
    model = build_model(load_experiment(EFFVIT_SPEC).model, 7, (256, 256)).eval()
    diverse_scores(model, 256)
    x = torch.from_numpy(probe_batch(1, 256, 256, seed=3))
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.float16):
            half = model(x)
    agreement = query_agreement(
        (ref["pred_logits"].numpy(), ref["pred_boxes"].numpy()),
        (half["pred_logits"].float().numpy(), half["pred_boxes"].float().numpy()),
        FP16_TOLERANCE,
    )
    assert agreement.ok(FP16_TOLERANCE), agreement.describe(256)
