"""Checkpoint layouts: TAO round trip, strict errors, fine-tune loading, backbone weights."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from rtdetr_trainer.model import build_model
from rtdetr_trainer.model.weights import (
    TAO_PREFIX,
    CheckpointFormatError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    infer_architecture,
    load_backbone_weights,
    load_pretrained,
    load_strict,
    read_checkpoint,
    to_tao_state_dict,
)
from tests.trainer._model_fixtures import one_thread, small_config

__all__ = ["one_thread"]

SIZE = (128, 128)


def _model(num_classes: int = 7, seed: int = 0, **cfg):
    torch.manual_seed(seed)
    return build_model(small_config(**cfg), num_classes, SIZE)


def _tao_checkpoint(model) -> dict:
    """The layout TAO's Lightning writes (other top-level entries do not matter here)."""
    return {
        "epoch": 3,
        "global_step": 120,
        "state_dict": to_tao_state_dict(model),
        "tao_model": "rtdetr",
    }


def _same(a: torch.nn.Module, b: torch.nn.Module, prefix: str = "") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix))


def test_tao_layout_round_trip_through_a_file(tmp_path):
    src, dst = _model(seed=1), _model(seed=2)
    sd = to_tao_state_dict(src)
    assert all(k.startswith(TAO_PREFIX) for k in sd)
    assert len(sd) == len(src.state_dict())
    path = tmp_path / "model_epoch_003.pth"
    torch.save(_tao_checkpoint(src), path)
    assert load_strict(dst, path) == "tao"
    assert _same(src, dst)


def test_bare_and_module_prefixed_state_dicts_load_strictly():
    src = _model(seed=1)
    for sd in (src.state_dict(), {"module." + k: v for k, v in src.state_dict().items()}):
        dst = _model(seed=2)
        load_strict(dst, sd)
        assert _same(src, dst)


def test_strict_load_names_the_class_count_difference():
    with pytest.raises(CheckpointMismatchError) as err:
        load_strict(_model(7), _tao_checkpoint(_model(80)), expected={"dataset.num_classes": 7})
    msg = str(err.value)
    assert "checkpoint has 80 classes (decoder.enc_score_head.weight [80, 64])" in msg
    assert "dataset.num_classes=7" in msg
    assert "decoder.dec_score_head.0.weight [80, 64] vs model [7, 64]" in msg


def test_strict_load_names_backbone_and_decoder_depth_differences():
    other = _tao_checkpoint(_model(backbone="resnet_34", dec_layers=4))
    with pytest.raises(CheckpointMismatchError) as err:
        load_strict(_model(), other)
    msg = str(err.value)
    assert "backbone looks like resnet_34" in msg and "model.backbone=resnet_18" in msg
    assert "checkpoint has 4 decoder layers" in msg
    assert "unexpected keys in the checkpoint: backbone.layer1.2." in msg


def test_frozen_norm_checkpoint_loads_into_trainable_norm_model_and_back():
    frozen = build_model(
        small_config(pretrained_backbone_path="x.pth"), 7, SIZE, load_backbone_weights=False
    )
    plain = _model(seed=3)
    assert "backbone.bn1.num_batches_tracked" not in frozen.state_dict()
    load_strict(plain, _tao_checkpoint(frozen))
    assert torch.equal(plain.backbone.bn1.running_var, frozen.backbone.bn1.running_var)
    load_strict(frozen, _tao_checkpoint(_model(seed=4)))


def test_encrypted_and_empty_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointFormatError, match="encrypted"):
        load_strict(_model(), {"state_dict": {}, "state_dict_encrypted": True})
    with pytest.raises(CheckpointFormatError, match="no tensors"):
        load_strict(_model(), {"epoch": 1})
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointFormatError, match=r"junk\.pth"):
        read_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.pth")


def test_pretrained_with_other_classes_reinitialises_exactly_the_class_layers(caplog):
    src, dst = _model(80, seed=1), _model(7, seed=2)
    fresh = {k: v.clone() for k, v in dst.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="rtdetr_trainer.model.weights"):
        report = load_pretrained(dst, _tao_checkpoint(src))
    expected = {
        "decoder.denoising_class_embed.weight",
        "decoder.enc_score_head.weight",
        "decoder.enc_score_head.bias",
    }
    expected |= {f"decoder.dec_score_head.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert set(report.reinitialised) == expected
    assert not report.skipped and not report.unexpected
    assert "skip layer decoder.enc_score_head.weight" in caplog.text
    new = dst.state_dict()
    for k in expected:
        assert torch.equal(new[k], fresh[k])
    for k in report.loaded:
        assert torch.equal(new[k], src.state_dict()[k])


def test_pretrained_from_original_rtdetr_skips_the_resnet_vd_backbone():
    src, dst = _model(seed=1), _model(seed=2)
    fresh_backbone = {k: v.clone() for k, v in dst.backbone.state_dict().items()}
    lyu = {k: v for k, v in src.state_dict().items() if not k.startswith("backbone.")}
    # ResNet-vd (PResNet) key names of the original implementation.
    lyu["backbone.conv1.conv1_1.conv.weight"] = torch.zeros(32, 3, 3, 3)
    lyu["backbone.res_layers.0.blocks.0.branch2a.conv.weight"] = torch.zeros(64, 64, 3, 3)
    lyu["backbone.res_layers.0.blocks.0.short.conv.weight"] = torch.zeros(64, 64, 1, 1)
    report = load_pretrained(dst, {"ema": {"module": lyu, "updates": 100}, "model": {}})
    assert report.source_format == "rtdetr-original(ema)"
    weights = {"backbone." + k for k in fresh_backbone if not k.endswith("num_batches_tracked")}
    assert set(report.skipped) == weights
    assert len(report.unexpected) == 3
    assert _same(dst, src, "encoder.") and _same(dst, src, "decoder.")
    assert all(torch.equal(dst.backbone.state_dict()[k], v) for k, v in fresh_backbone.items())


def test_pretrained_refuses_a_file_where_nothing_fits():
    with pytest.raises(CheckpointMismatchError, match="no tensor fits"):
        load_pretrained(_model(), {"model": {"foo.weight": torch.zeros(3)}})


def test_backbone_weights_from_a_torchvision_style_state_dict(tmp_path):
    src = _model(seed=1).backbone
    imagenet = dict(src.state_dict())
    imagenet["fc.weight"], imagenet["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet, path)
    dst = build_model(small_config(pretrained_backbone_path=str(path)), 7, SIZE).backbone
    assert torch.equal(dst.conv1.weight, src.conv1.weight)
    assert torch.equal(dst.layer4[1].bn2.running_var, src.layer4[1].bn2.running_var)
    assert torch.equal(dst.bn1.weight, src.bn1.weight)  # FrozenBatchNorm2d buffer
    report = load_backbone_weights(_model(seed=3).backbone, {"model": imagenet})
    assert "fc.weight" in report.ignored and not report.missing


def test_backbone_weights_of_another_layout_fail_loudly():
    vd = {
        "conv1.conv1_1.conv.weight": torch.zeros(32, 3, 3, 3),
        "res_layers.0.blocks.0.branch2a.conv.weight": torch.zeros(1),
    }
    with pytest.raises(CheckpointMismatchError, match=r"conv1\.weight"):
        load_backbone_weights(_model().backbone, vd)


def test_infer_architecture_reads_depth_classes_and_layers():
    r50 = build_model(small_config(backbone="resnet_50"), 11, SIZE)
    info = infer_architecture(r50.state_dict())
    assert (info.backbone, info.num_classes, info.dec_layers, info.hidden_dim) == (
        "resnet_50",
        11,
        3,
        64,
    )
    assert info.enc_layers == 1 and info.num_levels == 3 and info.denoising
    assert info.frozen_backbone_bn is False
    tao_keys = to_tao_state_dict(_model(backbone="resnet_34"))
    assert infer_architecture(tao_keys).backbone == "resnet_34"


def test_safetensors_state_dict_loads_strictly(tmp_path):
    from safetensors.torch import save_file

    src, dst = _model(seed=1), _model(seed=2)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in to_tao_state_dict(src).items()}, str(path))
    assert load_strict(dst, path) == "state_dict"
    assert _same(src, dst)


def test_pretrained_from_another_backbone_depth_loads_encoder_and_decoder_only():
    src, dst = _model(seed=1, backbone="resnet_34"), _model(seed=2)
    stem = dst.backbone.conv1.weight.clone()
    report = load_pretrained(dst, _tao_checkpoint(src))
    assert torch.equal(dst.backbone.conv1.weight, stem)  # same shape, still not loaded
    assert all(k.startswith("backbone.") for k in report.skipped)
    assert "backbone.conv1.weight" in report.skipped
    assert _same(dst, src, "decoder.")


class _Unimportable:
    """Pickled by reference; the test removes it before loading, as a foreign class would be."""


def test_checkpoint_with_foreign_python_objects_is_refused_naming_the_class(tmp_path, monkeypatch):
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": to_tao_state_dict(_model()), "callbacks": _Unimportable()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"foreign\.pth.*_Unimportable"):
        read_checkpoint(path)
    # with the trust opt-in it is unpickled, and a class that cannot be imported is named
    monkeypatch.setenv("RTDETR_TRUST_CHECKPOINTS", "1")
    monkeypatch.delattr(sys.modules[__name__], "_Unimportable")
    with pytest.raises(CheckpointFormatError, match="cannot be imported"):
        read_checkpoint(path)
