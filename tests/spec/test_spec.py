"""The experiment spec: TAO's defaults, the model card's example, overrides, ``??`` and bad keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr_spec import (
    WAREHOUSE_CLASSES,
    ExperimentSpec,
    MissingValueError,
    SpecError,
    dump_experiment,
    load_experiment,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD_SPEC = ROOT / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"


def test_defaults_are_taos() -> None:
    s = ExperimentSpec()
    assert s.model.backbone == "resnet_50"
    assert s.model.num_queries == 300 and s.model.dec_layers == 6 and s.model.enc_layers == 1
    assert s.dataset.num_classes == 80 and s.dataset.batch_size == 4
    assert s.dataset.augmentation.multi_scales == list(range(480, 801, 32))
    assert s.train.optim.lr == 1e-4 and s.train.optim.lr_backbone == 1e-5
    assert s.train.clip_grad_norm == 0.1 and s.train.precision == "fp32"
    assert s.export.opset_version == 17 and s.export.batch_size == -1
    assert s.gen_trt_engine.tensorrt.max_batch_size == 4


def test_seed_example_loads_unchanged() -> None:
    s = load_experiment(MODEL_CARD_SPEC)
    assert s.model.backbone == "resnet_50"  # the model card's `resnet50`
    assert s.dataset.num_classes == 7
    assert s.dataset.augmentation.scales_hw() == [(640, 640)]
    assert s.train.optim.lr == pytest.approx(1e-4)  # YAML 1.1 reads `1e-4` as a string
    assert set(s.inference.color_map or {}) == set(WAREHOUSE_CLASSES)
    assert "train.pretrained_model_path" in s.missing_keys()
    assert "export.gpu_id" in s.missing_keys()
    assert s.export.gpu_id == 0  # an optional `??` falls back to the default


def test_seed_train_command_overrides_one_element_list() -> None:
    s = load_experiment(
        MODEL_CARD_SPEC,
        [
            "dataset.train_data_sources.image_dir=/data/train",
            "dataset.train_data_sources.json_file=/data/train.json",
            "dataset.val_data_sources.image_dir=/data/val",
            "dataset.val_data_sources.json_file=/data/val.json",
            "results_dir=/tmp/r",
        ],
    )
    assert s.dataset.train_data_sources[0].image_dir == "/data/train"
    s.check_required("train")
    assert s.optional_missing("train") == ["train.pretrained_model_path"]
    assert s.task_results_dir("train") == "/tmp/r/train"


def test_keys_the_yaml_omits_are_created() -> None:
    s = load_experiment(
        MODEL_CARD_SPEC,
        ["dataset.test_data_sources.image_dir=/t", "dataset.test_data_sources.json_file=/t.json"],
    )
    assert s.dataset.test_data_sources.json_file == "/t.json"


def test_values_parse_as_yaml() -> None:
    s = load_experiment(
        MODEL_CARD_SPEC,
        ["dataset.augmentation.eval_spatial_size=[320,320]", "train.pretrained_model_path=null"],
    )
    assert s.dataset.augmentation.eval_spatial_size == [320, 320]
    assert s.train.pretrained_model_path is None
    assert "train.pretrained_model_path" not in s.missing_keys()


def test_required_key_left_unset_names_the_key() -> None:
    s = load_experiment(MODEL_CARD_SPEC, ["results_dir=/r"])
    with pytest.raises(MissingValueError) as e:
        s.check_required("evaluate")
    assert "evaluate.checkpoint" in e.value.keys
    assert "dataset.test_data_sources.image_dir" in e.value.keys
    assert "evaluate.checkpoint" in str(e.value)


def test_unknown_override_key_suggests() -> None:
    with pytest.raises(SpecError) as e:
        load_experiment(MODEL_CARD_SPEC, ["train.optim.lr_backbon=1e-5"])
    assert "train.optim.lr_backbon" in str(e.value) and "lr_backbone" in str(e.value)


def test_unknown_yaml_key_suggests(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("model:\n  backbon: resnet_50\n")
    with pytest.raises(SpecError) as e:
        load_experiment(p)
    assert "model.backbon" in str(e.value) and "'backbone'" in str(e.value)
    assert str(p) in str(e.value)


def test_several_sources_need_an_index() -> None:
    data = {"dataset": {"train_data_sources": [{"image_dir": "a"}, {"image_dir": "b"}]}}
    with pytest.raises(SpecError, match=r"dataset\.train_data_sources\.0\.image_dir"):
        load_experiment(data=data, overrides=["dataset.train_data_sources.image_dir=c"])
    s = load_experiment(data=data, overrides=["dataset.train_data_sources.1.image_dir=c"])
    assert [d.image_dir for d in s.dataset.train_data_sources] == ["a", "c"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.backbone=efficientvit_l3", "does not implement"),
        ("model.backbone=resnet_51", "unknown backbone"),
        ("export.opset_version=13", "opset 13"),
        ("train.num_gpus=0", "train.num_gpus"),
        ("dataset.augmentation.eval_spatial_size=[100,100]", "multiple of 32"),
        ("train.precision=fp8", "train.precision"),
        ("model.num_feature_levels=4", "return_interm_indices"),
        ("results_dir.x=1", "is a value, not a section"),
        ("nonsense", "key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        load_experiment(MODEL_CARD_SPEC, [override])


@pytest.mark.parametrize("alias", ["resnet18", "resnet34", "resnet50", "resnet101", "ResNet_50"])
def test_backbone_aliases(alias: str) -> None:
    s = load_experiment(MODEL_CARD_SPEC, [f"model.backbone={alias}"])
    assert s.model.backbone.startswith("resnet_")


def test_dump_round_trips(tmp_path: Path) -> None:
    s = load_experiment(MODEL_CARD_SPEC, ["results_dir=/r", "train.num_epochs=3"])
    p = tmp_path / "experiment.yaml"
    p.write_text(dump_experiment(s))
    again = load_experiment(p)
    assert again.model_dump() == s.model_dump()


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_experiment(p)
