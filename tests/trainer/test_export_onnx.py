"""`rtdetr export` end to end on a small R18 model: the graph contract, parity with PyTorch,
DeepStream files, the manifest, refusals and all-or-nothing output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import yaml

from rtdetr_serving.preprocess import to_model_input
from rtdetr_spec import WAREHOUSE_CLASSES
from rtdetr_spec.artifacts import ExportManifest, sha256_file
from rtdetr_spec.reporting import TaskSummary
from rtdetr_trainer.data.synth import SynthConfig, render_scene
from rtdetr_trainer.evaluation.onnx_predictor import OnnxPredictor
from rtdetr_trainer.export import ExportInputError, run
from rtdetr_trainer.export.fp16 import FP16ConversionError
from rtdetr_trainer.export.graph import BACKGROUND_LOGIT
from rtdetr_trainer.export.verify import FP32_TOLERANCE, probe_batch, query_agreement, run_onnx
from rtdetr_trainer.model import build_postprocessor
from rtdetr_trainer.model.rtdetr import RTDETR
from tests.trainer._export_support import (
    SIZE,
    deepstream_parse,
    make_checkpoint,
    same_detections,
    small_spec,
    warehouse_class_map,
)

pytestmark = pytest.mark.slow


class Exported:
    def __init__(self, root: Path, model: RTDETR, summary: TaskSummary, spec: Any) -> None:
        self.root, self.model, self.summary, self.spec = root, model, summary, spec
        self.onnx = root / "results" / "export" / "model.onnx"
        self.manifest = ExportManifest.read(self.onnx)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    root = tmp_path_factory.mktemp("export")
    ckpt = root / "model.pth"
    spec = small_spec(root / "results", ckpt, serialize_nvdsinfer=True)
    model = make_checkpoint(ckpt, spec, class_map=warehouse_class_map())
    summary = run(spec)
    yield Exported(root, model, summary, spec)


def _dims(v: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]


def test_graph_has_taos_tensors_with_a_symbolic_batch_and_only_standard_ops(exported) -> None:
    graph = onnx.load(str(exported.onnx))
    onnx.checker.check_model(graph, full_check=True)
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 17)]
    assert [i.name for i in graph.graph.input] == ["inputs"]
    assert _dims(graph.graph.input[0]) == ["batch", 3, SIZE, SIZE]
    assert {o.name: _dims(o) for o in graph.graph.output} == {
        "pred_logits": ["batch", 300, 8],
        "pred_boxes": ["batch", 300, 4],
    }
    ops = {n.op_type for n in graph.graph.node}
    assert "GridSample" in ops and "BatchNormalization" not in ops  # BN folded into convs
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    assert not any("Plugin" in n.op_type for n in graph.graph.node)


def test_manifest_describes_the_file(exported) -> None:
    m = exported.manifest
    assert m.onnx_file == "model.onnx" and m.onnx_sha256 == sha256_file(exported.onnx)
    assert m.precision == "fp32" and m.opset == 17 and m.batch_size == -1
    assert (m.input_height, m.input_width, m.num_queries) == (SIZE, SIZE, 300)
    assert m.class_names == ["background", *WAREHOUSE_CLASSES] and m.background_index == 0
    assert m.category_ids == [None, 1, 2, 3, 4, 5, 6, 7]
    assert [(t.name, t.shape, t.dtype) for t in m.inputs + m.outputs] == [
        ("inputs", [-1, 3, SIZE, SIZE], "float32"),
        ("pred_logits", [-1, 300, 8], "float32"),
        ("pred_boxes", [-1, 300, 4], "float32"),
    ]
    assert m.source_checkpoint == str(exported.root / "model.pth")
    assert m.source_checkpoint_sha256 == sha256_file(exported.root / "model.pth")
    assert set(m.tool_versions) >= {"torch", "onnx", "onnxruntime", "modelopt", "rtdetr-operator"}
    assert m.backbone == "resnet_18"


def test_serving_accepts_the_export_as_is(exported) -> None:
    """The Triton repository writer's contract check passes on the file and its manifest."""
    from rtdetr_serving.contract import ModelContract

    contract = ModelContract.from_manifest(exported.manifest)
    contract.check_onnx(exported.onnx)
    assert (contract.num_queries, contract.height, contract.width) == (300, SIZE, SIZE)


def test_summary_and_status(exported) -> None:
    s = exported.summary
    assert s.status == "SUCCESS" and s.artifacts["onnx"] == str(exported.onnx)
    assert s.metrics["onnx_query_agreement"] == 1.0
    lines = (exported.onnx.parent / "status.json").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["STARTED", "SUCCESS"]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("kind", ["random", "image-like", "warehouse"])
def test_onnxruntime_matches_pytorch(exported, batch: int, kind: str) -> None:
    rng = np.random.default_rng(batch)
    if kind == "random":
        x = rng.uniform(0, 1, (batch, 3, SIZE, SIZE)).astype(np.float32)
    elif kind == "image-like":
        x = probe_batch(batch, SIZE, SIZE, seed=batch + 10)
    else:  # rendered warehouse scenes (the trainer's synthetic data), at 2x then resized
        cfg = SynthConfig(width=2 * SIZE, height=2 * SIZE)
        scenes = [render_scene(cfg, rng)[0] for _ in range(batch)]
        x = np.stack([to_model_input(img, SIZE, SIZE) for img in scenes])
    with torch.no_grad():
        out = exported.model(torch.from_numpy(x))
    ref_logits, ref_boxes = out["pred_logits"].numpy(), out["pred_boxes"].numpy()
    logits, boxes = run_onnx(exported.onnx, x)
    assert logits.shape == (batch, 300, 8) and boxes.shape == (batch, 300, 4)
    np.testing.assert_array_equal(logits[..., 0], BACKGROUND_LOGIT)
    agreement = query_agreement((ref_logits, ref_boxes), (logits[..., 1:], boxes), FP32_TOLERANCE)
    # This model's stand-in score head spreads nearly identical query features over 7 classes,
    # so it amplifies float32 rounding ~40x: measured scores within 2e-5 (logits 8e-5), boxes
    # within 1.2e-7. (A freshly initialised head: logits within 2e-6; see the R50 test.)
    assert agreement.fraction == 1.0, agreement.describe(SIZE)
    assert agreement.max_score_diff <= 1e-4 and agreement.max_logit_diff <= 5e-4
    assert agreement.max_box_diff <= 1e-5

    # Detections after postprocess: the checkpoint's (PyTorch, 7 columns) and the export's
    # (numpy decoder, background column 0) are the same classes and boxes.
    sizes = np.array([[640, 480]] * batch, np.float32)
    torch_dets = build_postprocessor(exported.spec.model)(out, torch.from_numpy(sizes))
    pred = OnnxPredictor(exported.onnx, exported.spec, "evaluate")
    onnx_dets = pred.decode(logits, boxes, sizes)
    for t, o in zip(torch_dets, onnx_dets, strict=True):
        t_np = {k: v.numpy() for k, v in t.items()}
        t_np["labels"] = t_np["labels"] + 1  # same class, one column later in the export
        same_detections(t_np, o, top=100, box_tol=0.05, score_tol=1e-4)


def test_deepstream_files_agree_with_the_onnx_and_every_class_is_detectable(exported) -> None:
    folder = exported.onnx.parent
    config = yaml.safe_load((folder / "nvdsinfer_config.yaml").read_text())
    labels = (folder / "labels.txt").read_text().splitlines()
    prop = config["property"]
    assert (folder / prop["onnx-file"]).resolve() == exported.onnx.resolve()
    assert prop["infer-dims"] == f"3;{SIZE};{SIZE}"
    assert prop["output-blob-names"] == "pred_logits;pred_boxes"
    assert prop["num-detected-classes"] == len(labels) == exported.manifest.num_logits == 8
    assert labels == exported.manifest.class_names
    threshold = config["class-attrs-all"]["pre-cluster-threshold"]

    x = probe_batch(6, SIZE, SIZE, seed=3)
    logits, boxes = run_onnx(exported.onnx, x)
    found = set()
    for i in range(len(x)):
        for label, score, _ in deepstream_parse(
            logits[i], boxes[i], num_detected_classes=prop["num-detected-classes"],
            net_w=SIZE, net_h=SIZE, threshold=threshold,
        ):  # fmt: skip
            assert score >= threshold
            found.add(labels[label])
    assert found == set(WAREHOUSE_CLASSES)

    # Without the background column (the model's own 7 columns, person at 0) the same parser
    # could never report a person: it drops class 0. This is why the column is exported.
    lost = set()
    for i in range(len(x)):
        dets = deepstream_parse(
            logits[i, :, 1:], boxes[i], num_detected_classes=7, net_w=SIZE, net_h=SIZE
        )
        lost |= {WAREHOUSE_CLASSES[label] for label, _, _ in dets}
    assert "person" not in lost and lost <= set(WAREHOUSE_CLASSES[1:])
    with pytest.raises(ValueError, match="num-detected-classes 7 != logits dimension 8"):
        deepstream_parse(logits[0], boxes[0], num_detected_classes=7, net_w=SIZE, net_h=SIZE)


def test_predictor_refuses_a_tampered_export(exported, tmp_path) -> None:
    copy = tmp_path / "model.onnx"
    data = bytearray(exported.onnx.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    ExportManifest.path_for(copy).write_text(ExportManifest.path_for(exported.onnx).read_text())
    with pytest.raises(ValueError, match="does not match its manifest"):
        OnnxPredictor(copy, exported.spec, "evaluate")


def test_tao_convention_checkpoint_gets_no_extra_column(tmp_path) -> None:
    """ids 1..7 with num_classes 8 (index 0 unused), no class_map: names from the val JSON."""
    val = tmp_path / "val.json"
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(WAREHOUSE_CLASSES)]
    val.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    ckpt = tmp_path / "tao.pth"
    spec = small_spec(
        tmp_path / "results", ckpt, num_classes=8, serialize_nvdsinfer=True,
        onnx_file=str(tmp_path / "out" / "tao.onnx"),
        dataset={"val_data_sources": {"json_file": str(val)}},
    )  # fmt: skip
    make_checkpoint(ckpt, spec, class_map=None, diverse=False)
    run(spec)
    m = ExportManifest.read(tmp_path / "out" / "tao.onnx")
    assert m.class_names == ["background", *WAREHOUSE_CLASSES] and m.background_index == 0
    assert m.outputs[0].shape == [-1, 300, 8]
    graph = onnx.load(str(tmp_path / "out" / "tao.onnx"), load_external_data=False)
    assert "Pad" not in {n.op_type for n in graph.graph.node}
    labels = (tmp_path / "out" / "labels.txt").read_text().splitlines()
    assert labels == m.class_names
    assert not list((tmp_path / "results").rglob("*.onnx"))  # absolute onnx_file: not there


def test_static_batch_export_and_its_predictor(tmp_path) -> None:
    ckpt = tmp_path / "m.pth"
    spec = small_spec(tmp_path / "results", ckpt, batch_size=2)
    make_checkpoint(ckpt, spec, class_map=warehouse_class_map())
    run(spec)
    onnx_path = tmp_path / "results" / "export" / "model.onnx"
    graph = onnx.load(str(onnx_path), load_external_data=False)
    assert _dims(graph.graph.input[0]) == [2, 3, SIZE, SIZE]
    assert [_dims(o) for o in graph.graph.output] == [[2, 300, 8], [2, 300, 4]]
    assert ExportManifest.read(onnx_path).batch_size == 2
    pred = OnnxPredictor(onnx_path, spec, "inference")
    x = probe_batch(3, SIZE, SIZE)
    logits, _ = pred.forward(x)
    assert logits.shape == (3, 300, 8)
    np.testing.assert_allclose(logits[2:], pred.forward(np.concatenate([x[2:], x[:1]]))[0][:1])


def test_a_failed_export_leaves_the_previous_one_intact(tmp_path, monkeypatch) -> None:
    ckpt = tmp_path / "m.pth"
    spec = small_spec(tmp_path / "results", ckpt, serialize_nvdsinfer=True)
    make_checkpoint(ckpt, spec, class_map=warehouse_class_map())
    run(spec)
    out = tmp_path / "results" / "export"
    records = {"status.json", "experiment.yaml"}  # the task's log, appended by every run

    def outputs() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in out.iterdir() if p.name not in records}

    before = outputs()
    names = {"model.onnx", "model.manifest.json", "nvdsinfer_config.yaml", "labels.txt"}
    assert set(before) == names

    # A checkpoint of another model: refused before anything is written.
    other = tmp_path / "other.pth"
    make_checkpoint(other, spec, class_map=None, num_classes=5, diverse=False)
    bad = small_spec(tmp_path / "results", other, serialize_nvdsinfer=True)
    with pytest.raises(ExportInputError, match=r"5 classes .* dataset.num_classes=7"):
        run(bad)

    # A fault after the new ONNX was written (the FP16 step fails): nothing is replaced.
    def broken(*args: Any, **kwargs: Any) -> None:
        raise FP16ConversionError("simulated autocast failure")

    monkeypatch.setattr("rtdetr_trainer.export.task.convert_to_fp16", broken)
    fp16 = small_spec(tmp_path / "results", ckpt, serialize_nvdsinfer=True, fp16=True)
    with pytest.raises(RuntimeError, match="simulated autocast failure"):
        run(fp16)
    assert outputs() == before  # no temp files either
    last = json.loads((out / "status.json").read_text().splitlines()[-1])
    assert last["status"] == "FAILURE" and "simulated autocast failure" in last["message"]


def test_bad_checkpoints_are_named(tmp_path) -> None:
    ckpt = tmp_path / "r34.pth"
    spec = small_spec(tmp_path / "results", ckpt)
    make_checkpoint(ckpt, spec, class_map=None, backbone="resnet_34", diverse=False)
    with pytest.raises(ExportInputError) as e:
        run(spec)
    assert "resnet_34" in str(e.value) and "model.backbone=resnet_18" in str(e.value)
    deeper = small_spec(tmp_path / "results", ckpt, backbone="resnet_50")
    make_checkpoint(ckpt, deeper, class_map=None, backbone="resnet_18", diverse=False)
    with pytest.raises(ExportInputError) as e:
        run(deeper)  # a shallower checkpoint is named as what it is
    assert "looks like resnet_18 but the spec says model.backbone=resnet_50" in str(e.value)
    missing = small_spec(tmp_path / "results", tmp_path / "no.pth")
    with pytest.raises(ExportInputError, match=r"export.checkpoint: .*no.pth does not exist"):
        run(missing)
    assert not (tmp_path / "results" / "export" / "model.onnx").exists()
