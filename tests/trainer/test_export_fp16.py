"""``export.fp16``: Model Optimizer autocast on the CPU, FP32 islands, and agreement with FP32.

The model here selects all 336 anchors of a 128x128 input as queries, so FP16 and FP32 differ
only numerically (no proposal swaps at the top-Q boundary) and every query must agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml

from rtdetr_spec import WAREHOUSE_CLASSES
from rtdetr_spec.artifacts import ExportManifest, sha256_file
from rtdetr_trainer.evaluation.onnx_predictor import OnnxPredictor
from rtdetr_trainer.export import fp16, run
from rtdetr_trainer.export.verify import FP16_TOLERANCE, probe_batch, query_agreement, run_onnx
from tests.trainer._export_support import (
    ALL_ANCHORS_128,
    SIZE,
    deepstream_parse,
    make_checkpoint,
    same_detections,
    small_spec,
    warehouse_class_map,
)

pytestmark = pytest.mark.slow


class Pair:
    def __init__(self, folder: Path, spec: Any) -> None:
        self.fp32 = folder / "model.onnx"
        self.fp16 = folder / "model.fp16.onnx"
        self.folder, self.spec = folder, spec


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("fp16")
    ckpt = root / "model.pth"
    spec = small_spec(
        root / "results", ckpt, num_queries=ALL_ANCHORS_128, fp16=True, serialize_nvdsinfer=True
    )
    make_checkpoint(ckpt, spec, class_map=warehouse_class_map())
    run(spec)
    yield Pair(root / "results" / "export", spec)


def test_fp16_file_has_float32_io_and_its_own_manifest(pair) -> None:
    graph = onnx.load(str(pair.fp16))
    onnx.checker.check_model(graph)
    f32 = onnx.TensorProto.FLOAT
    assert [v.type.tensor_type.elem_type for v in (*graph.graph.input, *graph.graph.output)] == [
        f32
    ] * 3
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    m16, m32 = ExportManifest.read(pair.fp16), ExportManifest.read(pair.fp32)
    assert m16.precision == "fp16" and m32.precision == "fp32"
    assert m16.onnx_file == "model.fp16.onnx" and m16.onnx_sha256 == sha256_file(pair.fp16)
    assert m16.class_names == m32.class_names and m16.background_index == 0
    assert m16.inputs == m32.inputs and m16.outputs == m32.outputs
    assert m16.source_checkpoint_sha256 == m32.source_checkpoint_sha256
    assert pair.fp16.stat().st_size < 0.7 * pair.fp32.stat().st_size  # weights are half size


def test_query_selection_and_heads_stay_float32(pair) -> None:
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(pair.fp16)))
    types = {v.name: v.type.tensor_type.elem_type for v in graph.graph.value_info}
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    by_name = {n.name: n for n in graph.graph.node}
    topk = by_name["/model/decoder/TopK"]
    assert types[topk.input[0]] == f32
    score = by_name["/model/decoder/enc_score_head/MatMul"]
    assert types[score.output[0]] == f32
    last_head = next(n for n in graph.graph.node if "dec_score_head.5/MatMul" in n.name)
    assert types[last_head.output[0]] == f32
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    assert sum(types.get(n.output[0]) == f16 for n in convs) > 0.9 * len(convs)
    grids = [n for n in graph.graph.node if n.op_type == "GridSample"]
    assert grids and all(types.get(n.output[0]) == f16 for n in grids)


def test_model_optimizer_alone_writes_the_same_graph(pair, tmp_path, monkeypatch) -> None:
    """The export converted with our one-pass dead-end cleanup (export/fp16_cleanup.py); the
    library's own quadratic cleanup on the same FP32 file must leave the same graph."""
    monkeypatch.setattr(fp16, "linear_dead_end_cleanup", contextlib.nullcontext)
    plain = tmp_path / "plain.fp16.onnx"
    fp16.convert_to_fp16(pair.fp32, plain)
    theirs, ours = onnx.load(str(plain)).graph, onnx.load(str(pair.fp16)).graph
    assert len(ours.node) == len(theirs.node) and ours == theirs


@pytest.mark.parametrize("batch", [1, 4])
def test_fp16_agrees_with_fp32(pair, batch: int) -> None:
    x = np.concatenate(
        [
            probe_batch(batch, SIZE, SIZE, seed=batch),
            np.random.default_rng(batch).uniform(0, 1, (batch, 3, SIZE, SIZE)).astype(np.float32),
        ]
    )
    ref, got = run_onnx(pair.fp32, x), run_onnx(pair.fp16, x)
    agreement = query_agreement(ref, got, FP16_TOLERANCE)
    # Measured (with the stand-in score head, which amplifies rounding): scores within 0.012
    # (logits 0.05), boxes within 0.08 px at 640.
    assert agreement.fraction == 1.0, agreement.describe(640)
    assert agreement.max_score_diff <= 0.03 and agreement.max_box_diff * 640 <= 0.5
    sizes = np.array([[640, 640]] * len(x), np.float32)
    p32 = OnnxPredictor(pair.fp32, pair.spec, "evaluate")
    p16 = OnnxPredictor(pair.fp16, pair.spec, "evaluate")
    assert p16.precision == "fp16" and p16.class_map == p32.class_map
    for a, b in zip(p32.decode(*ref, sizes), p16.decode(*got, sizes), strict=True):
        same_detections(a, b, top=50, box_tol=2.0, score_tol=0.01)


def test_deepstream_fp16_config_points_at_the_fp16_file(pair) -> None:
    config = yaml.safe_load((pair.folder / "nvdsinfer_config.fp16.yaml").read_text())
    prop = config["property"]
    assert prop["onnx-file"] == "model.fp16.onnx" and prop["network-mode"] == 2
    labels = (pair.folder / "labels.txt").read_text().splitlines()
    assert prop["num-detected-classes"] == len(labels) == 8
    logits, boxes = run_onnx(pair.fp16, probe_batch(6, SIZE, SIZE, seed=3))
    found = {
        labels[label]
        for i in range(6)
        for label, _, _ in deepstream_parse(
            logits[i], boxes[i], num_detected_classes=8, net_w=SIZE, net_h=SIZE
        )
    }
    assert found == set(WAREHOUSE_CLASSES)


def test_both_exports_serve_without_their_manifests(pair, tmp_path: Path) -> None:
    """Our own FP32 and FP16 exports with the manifest removed (as TAO's files come): the
    repository writer derives the same contract from the graph and labels.txt."""
    import shutil

    from rtdetr_serving.graph_contract import derive_manifest
    from rtdetr_serving.repository import RepositoryIndex, write_repository

    for onnx_file in (pair.fp32, pair.fp16):
        bare = tmp_path / onnx_file.stem
        bare.mkdir()
        shutil.copy2(onnx_file, bare / onnx_file.name)
        shutil.copy2(pair.folder / "labels.txt", bare / "labels.txt")
        want = ExportManifest.read(onnx_file).model_dump()
        got = derive_manifest(bare / onnx_file.name).model_dump()
        for key in ("onnx_sha256", "precision", "opset", "input_height", "input_width"):
            assert got[key] == want[key], (onnx_file.name, key)
        for key in ("batch_size", "num_queries", "class_names", "background_index"):
            assert got[key] == want[key], (onnx_file.name, key)
        assert got["inputs"] == want["inputs"] and got["outputs"] == want["outputs"]
        model = write_repository(bare / onnx_file.name, bare / "repo", gpus=[], flavor="cpu")
        assert RepositoryIndex.read(model).onnx_sha256 == want["onnx_sha256"]
