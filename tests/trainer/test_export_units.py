"""Export pieces that need no traced detector: logit layout, DeepStream files, staging, output
comparison, paths, spec checks and the ONNX predictor's refusals (on a tiny real ONNX)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from rtdetr_spec import WAREHOUSE_CLASSES, SpecError, load_experiment
from rtdetr_spec.artifacts import ClassMap, ExportManifest
from rtdetr_trainer.errors import ModelFileError
from rtdetr_trainer.evaluation.onnx_predictor import OnnxPredictor
from rtdetr_trainer.export import ExportInputError, nvdsinfer
from rtdetr_trainer.export.classes import (
    class_map_from_categories,
    layout_for,
    resolve_class_map,
)
from rtdetr_trainer.export.manifest import build_manifest
from rtdetr_trainer.export.staging import StagedFiles, check_writable
from rtdetr_trainer.export.task import check_export_config, plan_paths
from rtdetr_trainer.export.verify import FP32_TOLERANCE, Tolerance, query_agreement
from tests.trainer._export_support import warehouse_class_map

CATEGORIES = {i + 1: n for i, n in enumerate(WAREHOUSE_CLASSES)}


# ---------------------------------------------------------------- logit layout
def test_contiguous_classes_get_a_background_column_so_person_survives_deepstream() -> None:
    layout = layout_for(ClassMap.model_validate(warehouse_class_map()))
    assert layout.prepend_background and layout.background_index == 0
    assert layout.class_names == ["background", *WAREHOUSE_CLASSES]
    assert layout.category_ids == [None, 1, 2, 3, 4, 5, 6, 7]
    assert layout.num_logits == 8 and layout.model_num_classes == 7
    assert layout.detectable() == list(WAREHOUSE_CLASSES)


def test_tao_convention_needs_no_extra_column() -> None:
    cmap = ClassMap.model_validate(warehouse_class_map(num_classes=8, first_index=1))
    layout = layout_for(cmap)
    assert not layout.prepend_background and layout.num_logits == 8
    assert layout.class_names == ["background", *WAREHOUSE_CLASSES]
    assert layout.background_index == 0 and layout.category_ids[0] is None


def test_unused_columns_are_named_not_dropped() -> None:
    cmap = class_map_from_categories({1: "a", 3: "c"}, 5)  # TAO rule: ids are indices
    layout = layout_for(cmap)
    assert layout.class_names == ["background", "a", "unused_2", "c", "unused_4"]
    assert layout.detectable() == ["a", "c"]


def test_class_map_rule_matches_the_trainer() -> None:
    assert class_map_from_categories(CATEGORIES, 7).index_of_category() == {
        i + 1: i for i in range(7)
    }
    assert class_map_from_categories(CATEGORIES, 8).index_of_category() == {
        i + 1: i + 1 for i in range(7)
    }
    with pytest.raises(ExportInputError, match=r"7 categories.*num_classes is 5"):
        class_map_from_categories(CATEGORIES, 5)


def _spec(tmp_path: Path, **over: object) -> object:
    data = {
        "results_dir": str(tmp_path / "r"),
        "dataset": {"num_classes": 7},
        "export": {"checkpoint": "x.pth", "onnx_file": "m.onnx"},
    }
    for k, v in over.items():
        section, key = k.split("__")
        data.setdefault(section, {})[key] = v  # type: ignore[index]
    return load_experiment(data=data)


def test_class_names_come_from_the_checkpoint_then_val_json_then_classmap(tmp_path) -> None:
    spec = _spec(tmp_path)
    assert resolve_class_map(spec, warehouse_class_map()).names_by_index() == list(
        WAREHOUSE_CLASSES
    )
    with pytest.raises(ExportInputError, match=r"8 classes .*dataset.num_classes is 7"):
        resolve_class_map(spec, warehouse_class_map(num_classes=8, first_index=1))
    with pytest.raises(ExportInputError, match=r"val_data_sources.json_file nor"):
        resolve_class_map(spec, None)

    val = tmp_path / "val.json"
    cats = [{"id": i, "name": n} for i, n in CATEGORIES.items()]
    val.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    spec = load_experiment(
        data={"dataset": {"num_classes": 7, "val_data_sources": {"json_file": str(val)}}}
    )
    assert resolve_class_map(spec, None).index_of_category()[1] == 0

    lines = tmp_path / "classmap.txt"
    lines.write_text("background\nperson\nforklift\n")
    spec = load_experiment(
        data={"dataset": {"num_classes": 3, "infer_data_sources": {"classmap": str(lines)}}}
    )
    layout = layout_for(resolve_class_map(spec, None))
    assert layout.class_names == ["background", "person", "forklift"]
    assert not layout.prepend_background


# ---------------------------------------------------------------- DeepStream files
def test_nvdsinfer_config_is_taos_layout_and_agrees_with_the_logits() -> None:
    layout = layout_for(ClassMap.model_validate(warehouse_class_map()))
    config = nvdsinfer.nvdsinfer_config("model.onnx", layout, 640, 640)
    text = nvdsinfer.render_config(config)
    back = yaml.safe_load(text)
    prop = back["property"]
    assert prop["onnx-file"] == "model.onnx" and prop["infer-dims"] == "3;640;640"
    assert prop["net-scale-factor"] == pytest.approx(1 / 255)
    assert prop["output-blob-names"] == "pred_logits;pred_boxes"
    assert prop["parse-bbox-func-name"] == "NvDsInferParseCustomDDETRTAO"
    assert prop["num-detected-classes"] == 8 and prop["network-mode"] == 2
    assert prop["labelfile-path"] == "labels.txt" and prop["cluster-mode"] == 4
    assert back["class-attrs-all"] == {"pre-cluster-threshold": 0.5, "topk": 20}
    assert list(back) == sorted(back) and list(prop) == sorted(prop)
    labels = nvdsinfer.labels_text(layout)
    assert labels.splitlines() == ["background", *WAREHOUSE_CLASSES]
    nvdsinfer.check_agreement(config, labels, 8)
    with pytest.raises(ValueError, match=r"8 columns, num-detected-classes is 8, labels.txt has 7"):
        nvdsinfer.check_agreement(config, "".join(f"{n}\n" for n in WAREHOUSE_CLASSES), 8)


# ---------------------------------------------------------------- staging
def test_staged_files_appear_together_or_not_at_all(tmp_path) -> None:
    (tmp_path / "a.onnx").write_text("old a")
    with pytest.raises(RuntimeError), StagedFiles() as staged:
        staged.write_text(tmp_path / "a.onnx", "new a")
        staged.write_text(tmp_path / "b.json", "new b")
        raise RuntimeError("crash before commit")
    assert (tmp_path / "a.onnx").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]

    with StagedFiles() as staged:
        staged.write_text(tmp_path / "a.onnx", "new a")
        staged.write_text(tmp_path / "b.json", "new b")
        assert (tmp_path / "a.onnx").read_text() == "old a"
        staged.commit()
    assert (tmp_path / "a.onnx").read_text() == "new a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_unwritable_output_folder_is_named(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportInputError, match=r"export.onnx_file: cannot write to .*file/out"):
        check_writable(blocker / "out", "export.onnx_file")


# ---------------------------------------------------------------- output comparison
def test_query_agreement_pairs_permuted_queries_and_catches_real_differences() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(-4, 2, (2, 50, 8)).astype(np.float32)
    boxes = rng.uniform(0, 1, (2, 50, 4)).astype(np.float32)
    perm = rng.permutation(50)
    same = query_agreement((logits, boxes), (logits[:, perm], boxes[:, perm]), FP32_TOLERANCE)
    assert same.fraction == 1.0 and same.max_logit_diff == 0.0 and same.max_score_diff == 0.0

    moved = boxes.copy()
    moved[:, :10] += 0.01  # 10 of 50 queries moved by 1 % of the image
    worse = query_agreement((logits, boxes), (logits, moved), FP32_TOLERANCE)
    assert worse.fraction == pytest.approx(0.8) and not worse.ok(FP32_TOLERANCE)
    loose = query_agreement((logits, boxes), (logits, moved), Tolerance(1e-4, 0.02, 0.95))
    assert loose.fraction == 1.0 and loose.max_box_diff == pytest.approx(0.01, abs=1e-6)
    with pytest.raises(ValueError, match=r"output shapes differ"):
        query_agreement((logits, boxes), (logits[:1], boxes[:1]), FP32_TOLERANCE)


# ---------------------------------------------------------------- paths and spec checks
def test_output_paths(tmp_path) -> None:
    spec = _spec(tmp_path, export__fp16=True, export__serialize_nvdsinfer=True)
    p = plan_paths(spec)
    out = tmp_path / "r" / "export"
    assert p.onnx == out / "m.onnx" and p.manifest == out / "m.manifest.json"
    assert p.fp16_onnx == out / "m.fp16.onnx" and p.fp16_manifest == out / "m.fp16.manifest.json"
    assert p.nvdsinfer_config == out / "nvdsinfer_config.yaml"
    assert p.nvdsinfer_fp16_config == out / "nvdsinfer_config.fp16.yaml"
    assert p.labels == out / "labels.txt"
    absolute = plan_paths(_spec(tmp_path, export__onnx_file=str(tmp_path / "abs" / "x.onnx")))
    assert absolute.onnx == tmp_path / "abs" / "x.onnx" and absolute.fp16_onnx is None
    assert absolute.labels is None
    with pytest.raises(ExportInputError, match=r"export.onnx_file must name a .onnx file"):
        plan_paths(_spec(tmp_path, export__onnx_file="model.pt"))


def test_spec_values_export_cannot_honour(tmp_path) -> None:
    with pytest.raises(ExportInputError, match=r"export.input_height is 600; .*multiple of 32"):
        check_export_config(_spec(tmp_path, export__input_height=600))
    with pytest.raises(ExportInputError, match=r"export.is_quantized"):
        check_export_config(_spec(tmp_path, export__is_quantized=True))
    with pytest.raises(SpecError, match=r"export.opset_version: opset 15 is too old"):
        _spec(tmp_path, export__opset_version=15)
    missing = load_experiment(data={"results_dir": "/r", "export": {"checkpoint": "??"}})
    with pytest.raises(SpecError, match=r"export.checkpoint: required by `export`"):
        check_export_config(missing)


# ---------------------------------------------------------------- ONNX predictor refusals
class _Tiny(nn.Module):
    """[B, 3, 32, 32] -> logits [B, 4, 3] (column 0 very negative), boxes [B, 4, 4]."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = x.mean((2, 3))  # [B, 3]
        logits = m[:, None, :].expand(-1, 4, -1) * torch.tensor([0.0, 4.0, -4.0]) + torch.tensor(
            [-100.0, 0.0, 0.0]
        )
        boxes = torch.sigmoid(m[:, None, :1].expand(-1, 4, 4) + torch.arange(4.0)[:, None] - 2)
        return logits, boxes


def _tiny_export(folder: Path, batch: int = -1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.onnx"
    axes = {n: {0: "batch"} for n in ("inputs", "pred_logits", "pred_boxes")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Tiny(),
            (torch.ones(1 if batch == -1 else batch, 3, 32, 32),),
            str(path),
            dynamo=False,
            input_names=["inputs"],
            output_names=["pred_logits", "pred_boxes"],
            opset_version=17,
            dynamic_axes=axes if batch == -1 else None,
        )
    layout = layout_for(class_map_from_categories({1: "person", 2: "pallet"}, 2))
    manifest = build_manifest(
        path, onnx_name=path.name, precision="fp32", height=32, width=32, batch_size=batch,
        num_queries=4, layout=layout, source_checkpoint=None, source_checkpoint_sha256=None,
        backbone=None,
    )  # fmt: skip
    manifest.write(path)
    return path


def test_onnx_predictor_refuses_a_model_without_manifest_or_changed_since(tmp_path) -> None:
    path = _tiny_export(tmp_path)
    spec = load_experiment(data={"dataset": {"num_classes": 2}})
    pred = OnnxPredictor(path, spec, "evaluate")
    assert pred.input_size == (32, 32) and pred.background_index == 0
    assert pred.class_map is not None and pred.class_map.category_of_index() == {1: 1, 2: 2}

    sized = load_experiment(data={"evaluate": {"input_width": 64}})
    with pytest.raises(ModelFileError, match=r"evaluate.input_width is 64 but tiny.onnx takes"):
        OnnxPredictor(path, sized, "evaluate")

    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFileError, match=r"inference.checkpoint: .*does not match its"):
        OnnxPredictor(path, spec, "inference")

    ExportManifest.path_for(path).unlink()
    with pytest.raises(ModelFileError, match=r"has no manifest .*tiny.manifest.json"):
        OnnxPredictor(path, spec, "evaluate")
    with pytest.raises(ModelFileError, match=r"does not exist"):
        OnnxPredictor(tmp_path / "nope.onnx", spec, "evaluate")


def test_onnx_predictor_feeds_a_fixed_batch_file_in_padded_chunks(tmp_path) -> None:
    dynamic = OnnxPredictor(_tiny_export(tmp_path / "d", -1), load_experiment(), "evaluate")
    fixed = OnnxPredictor(_tiny_export(tmp_path / "f", 2), load_experiment(), "evaluate")
    x = np.random.default_rng(0).uniform(0, 1, (5, 3, 32, 32)).astype(np.float32)
    want, got = dynamic.forward(x), fixed.forward(x)
    assert got[0].shape == (5, 4, 3)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-6)
    dets = fixed.predict(x, np.array([[64, 32]] * 5))
    assert all(0 not in d["labels"] for d in dets)  # the background column is never reported
    assert dets[0]["boxes"][:, 2].max() <= 64 and dets[0]["boxes"][:, 3].max() <= 32
    with pytest.raises(ValueError, match=r"expects \[B, 3, 32, 32\]"):
        fixed.forward(x[:, :, :16])
