"""A small ONNX with exactly the exported RT-DETR signature, and its export manifest.

``inputs`` float32 [batch, 3, H, W] -> ``pred_logits`` [batch, 300, C] and ``pred_boxes``
[batch, 300, 4] (sigmoid, normalised cxcywh), opset 17, dynamic batch, standard ops only. The
weights are random but fixed by ``seed``, and the outputs depend on the image content (two strided
convs + global pooling, plus the mean colour), so different images give different detections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rtdetr_spec import WAREHOUSE_CLASSES
from rtdetr_spec.artifacts import ExportManifest, TensorSpec, sha256_file


def make_rtdetr_like_onnx(
    path: Path,
    *,
    height: int = 64,
    width: int = 64,
    num_queries: int = 300,
    num_logits: int = 7,
    seed: int = 0,
) -> None:
    rng = np.random.default_rng(seed)
    q, c = num_queries, num_logits

    def init(name: str, arr: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(arr.astype(np.float32), name)

    feat = 16 + 3
    inits = [
        init("w1", rng.normal(0, 0.5, (8, 3, 3, 3))),
        init("w2", rng.normal(0, 0.3, (16, 8, 3, 3))),
        init("wl", rng.normal(0, 0.1, (feat, q * c))),
        init("bl", rng.normal(-3.0, 1.0, (q * c,))),
        init("wb", rng.normal(0, 1.0, (feat, q * 4))),
        init("bb", rng.normal(0, 0.5, (q * 4,))),
        numpy_helper.from_array(np.array([-1, q, c], dtype=np.int64), "shape_logits"),
        numpy_helper.from_array(np.array([-1, q, 4], dtype=np.int64), "shape_boxes"),
    ]
    nodes = [
        helper.make_node("Conv", ["inputs", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g2"]),
        helper.make_node("Flatten", ["g2"], ["f2"], axis=1),
        helper.make_node("GlobalAveragePool", ["inputs"], ["g0"]),
        helper.make_node("Flatten", ["g0"], ["f0"], axis=1),
        helper.make_node("Concat", ["f2", "f0"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "wl"], ["ml"]),
        helper.make_node("Add", ["ml", "bl"], ["al"]),
        helper.make_node("Reshape", ["al", "shape_logits"], ["pred_logits"]),
        helper.make_node("MatMul", ["feat", "wb"], ["mb"]),
        helper.make_node("Add", ["mb", "bb"], ["ab"]),
        helper.make_node("Sigmoid", ["ab"], ["sb"]),
        helper.make_node("Reshape", ["sb", "shape_boxes"], ["pred_boxes"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rtdetr_like",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["batch", 3, height, width])],
        [
            helper.make_tensor_value_info("pred_logits", TensorProto.FLOAT, ["batch", q, c]),
            helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, ["batch", q, 4]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9, producer_name="tests"
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def make_export(
    path: Path,
    *,
    height: int = 64,
    width: int = 64,
    background: bool = False,
    seed: int = 0,
) -> ExportManifest:
    """Write ``path`` (ONNX) and ``<stem>.manifest.json``; return the manifest."""
    names = list(WAREHOUSE_CLASSES)
    ids: list[int | None] = list(range(1, len(names) + 1))
    if background:
        names, ids = ["background", *names], [None, *ids]
    make_rtdetr_like_onnx(path, height=height, width=width, num_logits=len(names), seed=seed)
    manifest = ExportManifest(
        onnx_file=path.name,
        onnx_sha256=sha256_file(path),
        precision="fp32",
        opset=17,
        input_height=height,
        input_width=width,
        batch_size=-1,
        num_queries=300,
        class_names=names,
        background_index=0 if background else None,
        category_ids=ids,
        inputs=[TensorSpec(name="inputs", shape=[-1, 3, height, width])],
        outputs=[
            TensorSpec(name="pred_logits", shape=[-1, 300, len(names)]),
            TensorSpec(name="pred_boxes", shape=[-1, 300, 4]),
        ],
        backbone="synthetic-test-net",
    )
    manifest.write(path)
    return manifest
