"""``rtdetr train|evaluate|inference|export -e examples/specs/rtdetr_effvit_l2_warehouse.yaml``: the
EfficientViT-L2 example spec end to end through the real executable, CPU-sized (160x256 keeps
the 544x960 aspect roughly and gives 5x8 = 40 attention positions, so the linear attention path
runs, not the small-map fallback)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import yaml

from rtdetr_spec import load_experiment
from rtdetr_spec.artifacts import ExportManifest
from tests.trainer.test_cli_train import _assert_table_with_seven, _sources, rtdetr
from tests.trainer.trainer_fixtures import synth_dataset

pytestmark = pytest.mark.slow

EFFVIT_SPEC = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "rtdetr_effvit_l2_warehouse.yaml"
)
H, W = 160, 256
CPU_SIZED = [
    f"dataset.augmentation.eval_spatial_size=[{H},{W}]",
    f"dataset.augmentation.train_spatial_size=[{H},{W}]",
    f"dataset.augmentation.multi_scales=[[{H},{W}]]",
    f"evaluate.input_width={W}",
    f"evaluate.input_height={H}",
    "dataset.batch_size=2",
    "dataset.workers=0",
    "train.num_epochs=1",
    "train.num_gpus=1",
    "train.precision=fp32",
    "train.activation_checkpoint=false",
    "dataset.train_data_sources.sample_size=2",
]


def test_example_spec_is_the_544x960_efficientvit_model() -> None:
    spec = load_experiment(EFFVIT_SPEC)
    assert spec.model.backbone == "efficientvit_l2"
    assert spec.dataset.augmentation.eval_spatial_size == [544, 960]
    assert (spec.export.input_height, spec.export.input_width) == (544, 960)
    assert spec.dataset.num_classes == 7


def test_example_spec_trains_evaluates_infers_and_exports(tmp_path: Path) -> None:
    synth_dataset(tmp_path / "data", num_images=6, width=W, height=H)
    image_dir, ann = tmp_path / "data" / "images", tmp_path / "data" / "annotations"
    results = tmp_path / "results"
    common = [f"-e={EFFVIT_SPEC}", f"results_dir={results}", *CPU_SIZED]
    train = rtdetr("train", *common, *_sources(image_dir, ann, "train", "val"))
    assert train.returncode == 0, train.stderr[-3000:]
    _assert_table_with_seven(train.stdout)
    ckpt = results / "train" / "model_epoch_000.pth"
    assert ckpt.is_file()

    ev = rtdetr(
        "evaluate", *common, f"evaluate.checkpoint={ckpt}", *_sources(image_dir, ann, "test")
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "strictly" in ev.stderr
    _assert_table_with_seven(ev.stdout)

    inf = rtdetr(
        "inference",
        *common,
        f"inference.checkpoint={ckpt}",
        f"inference.input_height={H}",
        f"inference.input_width={W}",
        f"dataset.infer_data_sources.image_dir=[{image_dir / 'test'}]",
    )
    assert inf.returncode == 0, inf.stderr[-3000:]
    assert (results / "inference" / "detections.json").is_file()

    ex = rtdetr(
        "export",
        *common,
        f"export.checkpoint={ckpt}",
        "export.onnx_file=rtdetr_effvit_l2.onnx",
        f"export.input_height={H}",
        f"export.input_width={W}",
        "export.on_cpu=true",
    )
    assert ex.returncode == 0, ex.stderr[-3000:]
    out = results / "export"
    onnx_file = out / "rtdetr_effvit_l2.onnx"
    graph = onnx.load(str(onnx_file))
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim][1:] == [3, H, W]
    assert any("context_module" in n.name for n in graph.graph.node)
    manifest = ExportManifest.read(onnx_file)
    assert manifest.backbone == "efficientvit_l2" and manifest.num_logits == 8
    config = yaml.safe_load((out / "nvdsinfer_config.yaml").read_text())["property"]
    assert config["infer-dims"] == f"3;{H};{W}"
