"""The exported ONNX behind ``rtdetr evaluate``/``inference`` and ``rtdetr export`` through the CLI:
the same metrics and detections as the checkpoint, exit codes and termination messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtdetr_spec import WAREHOUSE_CLASSES, load_experiment
from rtdetr_spec.artifacts import ExportManifest
from rtdetr_spec.reporting import TaskSummary
from rtdetr_trainer.cli import main
from rtdetr_trainer.evaluation.run import run_evaluate
from rtdetr_trainer.inference.run import run_inference
from tests.trainer._export_support import make_checkpoint, small_spec, warehouse_class_map
from tests.trainer.trainer_fixtures import synth_dataset

pytestmark = pytest.mark.slow

SIZE = 128
MODEL_CARD_SPEC = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
)


class Setup:
    def __init__(self, root: Path, data: dict[str, Path], ckpt: Path) -> None:
        self.root, self.data, self.ckpt = root, data, ckpt
        self.images = data["test"].parent.parent / "images"
        self.onnx = root / "results" / "export" / "model.onnx"
        self.fp16 = root / "results" / "export" / "model.fp16.onnx"

    def spec(self, task: str, checkpoint: Path, out: str, **section: Any) -> Any:
        return load_experiment(
            data={
                "results_dir": str(self.root / out),
                "model": {"backbone": "resnet_18"},
                "dataset": {
                    "num_classes": 7,
                    "batch_size": 3,
                    "workers": 0,
                    "augmentation": {"eval_spatial_size": [SIZE, SIZE]},
                    "test_data_sources": {
                        "image_dir": str(self.images),
                        "json_file": str(self.data["test"]),
                    },
                    "infer_data_sources": {"image_dir": [str(self.images / "test")]},
                },
                task: {"checkpoint": str(checkpoint), **section},
            }
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("onnx-eval")
    data = synth_dataset(root / "data", num_images=40, width=SIZE, height=SIZE, seed=5)
    ckpt = root / "model.pth"
    spec = small_spec(root / "results", ckpt, fp16=True)
    make_checkpoint(ckpt, spec, class_map=warehouse_class_map())
    args = [f"-e={MODEL_CARD_SPEC}", *_export_args(root / "results", ckpt), "export.fp16=true"]
    assert main(["export", *args]) == 0
    yield Setup(root, data, ckpt)


def _export_args(results: Path, ckpt: Path) -> list[str]:
    return [
        f"results_dir={results}",
        f"export.checkpoint={ckpt}",
        "export.onnx_file=model.onnx",
        "model.backbone=resnet_18",
        f"dataset.augmentation.eval_spatial_size=[{SIZE},{SIZE}]",
        f"export.input_height={SIZE}",
        f"export.input_width={SIZE}",
        "export.gpu_id=0",
    ]


def _same_detections(a: list[dict], b: list[dict]) -> None:
    """Every detection of ``a`` has a counterpart in ``b`` (same image and class, score within
    1e-4, box within 0.05 px), except near-ties at an image's top-100 cut-off, whose rank may
    legitimately differ."""
    assert len(a) == len(b)
    by_image: dict[int, list[dict]] = {}
    for y in b:
        by_image.setdefault(y["image_id"], []).append(y)
    cut = {i: min(y["score"] for y in ys) for i, ys in by_image.items()}
    for x in sorted(a, key=lambda r: -r["score"]):
        if x["score"] <= cut[x["image_id"]] + 1e-4:
            continue
        found = [
            y
            for y in by_image[x["image_id"]]
            if y["category_id"] == x["category_id"]
            and abs(y["score"] - x["score"]) < 1e-4
            and np.allclose(y["bbox"], x["bbox"], atol=0.05)
        ]
        assert found, f"no counterpart for {x}"
        by_image[x["image_id"]].remove(found[0])


def _evaluate(setup: Setup, model: Path, out: str, gt: Path | None = None) -> tuple[Any, list]:
    spec = setup.spec("evaluate", model, out)
    if gt is not None:
        spec.dataset.test_data_sources.json_file = str(gt)
    metrics, summary = run_evaluate(spec)
    assert summary.status == "SUCCESS"
    dets = setup.root / out / "evaluate" / "detections.json"
    return metrics, json.loads(dets.read_text())


@pytest.fixture(scope="module")
def own_gt(setup) -> Path:
    """Ground truth made of the checkpoint's own confident detections on the test split.

    An untrained model scores ~0 on the real boxes, which two runs could match by chance; on
    these it scores high, and any difference in a box, class or rank between runs shows.
    """
    _, dets = _evaluate(setup, setup.ckpt, "own-source")
    gt = json.loads(setup.data["test"].read_text())
    gt["annotations"] = []
    for d in dets:
        w, h = d["bbox"][2:]
        if d["score"] >= 0.5 and w >= 2 and h >= 2:
            gt["annotations"].append(
                {"id": len(gt["annotations"]) + 1, "image_id": d["image_id"],
                 "category_id": d["category_id"], "bbox": d["bbox"], "area": w * h,
                 "iscrowd": 0}
            )  # fmt: skip
    assert len({a["category_id"] for a in gt["annotations"]}) >= 5
    path = setup.root / "own_gt.json"
    path.write_text(json.dumps(gt))
    return path


@pytest.mark.parametrize("truth", ["synthetic", "own"])
def test_evaluating_the_onnx_equals_evaluating_the_checkpoint(setup, own_gt, truth) -> None:
    gt = own_gt if truth == "own" else None
    ref, ref_dets = _evaluate(setup, setup.ckpt, f"{truth}-ckpt", gt)
    got, got_dets = _evaluate(setup, setup.onnx, f"{truth}-onnx", gt)
    _same_detections(ref_dets, got_dets)
    assert got.stats == pytest.approx(ref.stats, abs=1e-4)
    assert got.per_class_AP50 == pytest.approx(ref.per_class_AP50, abs=1e-4)
    if truth == "own":
        assert ref.mAP50 > 0.9  # measured: 1.0


def test_evaluating_the_fp16_onnx_is_close(setup, own_gt) -> None:
    ref, _ = _evaluate(setup, setup.onnx, "fp32-own", own_gt)
    got, _ = _evaluate(setup, setup.fp16, "fp16-own", own_gt)
    assert ref.mAP50 > 0.9
    assert abs(got.mAP50 - ref.mAP50) <= 0.01 and abs(got.mAP - ref.mAP) <= 0.02


def test_inference_on_the_onnx_names_classes_from_its_manifest(setup) -> None:
    threshold = 0.3
    for name, path in (("inf-ckpt", setup.ckpt), ("inf-onnx", setup.onnx)):
        run_inference(setup.spec("inference", path, name, conf_threshold=threshold))
    a = json.loads((setup.root / "inf-ckpt" / "inference" / "detections.json").read_text())
    b = json.loads((setup.root / "inf-onnx" / "inference" / "detections.json").read_text())
    assert a and abs(len(a) - len(b)) <= 2
    for one, other in ((a, b), (b, a)):
        pool = list(other)
        for x in one:
            assert x["class"] in WAREHOUSE_CLASSES
            assert x["category_id"] == WAREHOUSE_CLASSES.index(x["class"]) + 1
            if abs(x["score"] - threshold) < 1e-4:
                continue  # may fall on either side of the threshold
            found = [
                y
                for y in pool
                if (y["file_name"], y["class"]) == (x["file_name"], x["class"])
                and abs(y["score"] - x["score"]) < 1e-4
                and np.allclose(y["bbox"], x["bbox"], atol=0.05)
            ]
            assert found, f"no counterpart for {x}"
            pool.remove(found[0])
    labels = sorted((setup.root / "inf-onnx" / "inference" / "labels").iterdir())
    lines = [line.split() for p in labels for line in p.read_text().splitlines()]
    assert lines and all(line[0] in WAREHOUSE_CLASSES for line in lines)


def test_onnx_without_manifest_or_at_another_size_is_refused_with_exit_2(setup, capsys) -> None:
    lonely = setup.root / "lonely.onnx"
    lonely.write_bytes(setup.onnx.read_bytes())
    args = [
        f"-e={MODEL_CARD_SPEC}",
        f"results_dir={setup.root / 'refused'}",
        f"dataset.test_data_sources.image_dir={setup.images}",
        f"dataset.test_data_sources.json_file={setup.data['test']}",
        "model.backbone=resnet_18",
        "dataset.num_classes=7",
    ]
    assert main(["evaluate", *args, f"evaluate.checkpoint={lonely}"]) == 2
    err = capsys.readouterr().err
    assert "has no manifest (lonely.manifest.json)" in err and "Traceback" not in err
    assert main(["evaluate", *args, f"evaluate.checkpoint={setup.onnx}"]) == 2  # seed: 640
    assert f"evaluate.input_height is 640 but model.onnx takes {SIZE}x{SIZE}" in (
        capsys.readouterr().err
    )


def test_export_through_the_cli_reports_its_summary(setup, tmp_path, monkeypatch) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv("RTDETR_TERMINATION_LOG", str(log))
    code = main(["export", f"-e={MODEL_CARD_SPEC}", *_export_args(tmp_path / "r", setup.ckpt)])
    assert code == 0
    summary = TaskSummary.model_validate_json(log.read_text())
    assert summary.status == "SUCCESS" and summary.metrics["onnx_query_agreement"] == 1.0
    onnx = tmp_path / "r" / "export" / "model.onnx"
    assert summary.artifacts["onnx"] == str(onnx)
    assert summary.artifacts["nvdsinfer_config"] == str(onnx.parent / "nvdsinfer_config.yaml")
    assert ExportManifest.read(onnx).onnx_sha256 == ExportManifest.read(setup.onnx).onnx_sha256
    status = [json.loads(line) for line in (onnx.parent / "status.json").read_text().splitlines()]
    assert [s["status"] for s in status] == ["STARTED", "SUCCESS"]
    assert (onnx.parent / "experiment.yaml").is_file()


def test_export_of_a_mismatched_checkpoint_exits_2_naming_both(
    setup, tmp_path, monkeypatch, capsys
) -> None:
    other = tmp_path / "r34.pth"
    spec = small_spec(tmp_path, other)
    make_checkpoint(other, spec, class_map=None, backbone="resnet_34", diverse=False)
    log = tmp_path / "termination-log"
    monkeypatch.setenv("RTDETR_TERMINATION_LOG", str(log))
    code = main(["export", f"-e={MODEL_CARD_SPEC}", *_export_args(tmp_path / "r", other)])
    assert code == 2
    err = capsys.readouterr().err
    assert "resnet_34" in err and "model.backbone=resnet_18" in err and "Traceback" not in err
    summary = TaskSummary.model_validate_json(log.read_text())
    assert summary.status == "FAILURE" and "resnet_34" in (summary.message or "")
    assert not (tmp_path / "r" / "export" / "model.onnx").exists()
    last = (tmp_path / "r" / "export" / "status.json").read_text().splitlines()[-1]
    assert json.loads(last)["status"] == "FAILURE"
