"""EfficientViT-L2 (``backbone: efficientvit_l2``) against the facts measured on TAO's own classes
(TAO 6.25.10): parameter counts per stage, state-dict keys and shapes (809 entries in training
layout, 768 in export mode), output shapes and strides, the attention's head layout and float32
core, and loading backbone files in every key layout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rtdetr_spec.model import ModelConfig
from rtdetr_trainer.model.build import build_model
from rtdetr_trainer.model.efficientvit import EfficientViTL2, LiteMLA, linear_attention
from rtdetr_trainer.model.weights import (
    CheckpointMismatchError,
    infer_architecture,
    load_backbone_weights,
    load_strict,
    to_tao_state_dict,
)
from tests.trainer._model_fixtures import one_thread

__all__ = ["one_thread"]

_COUNTER = "num_batches_tracked"


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="efficientvit_l2"), 7, (640, 640)).eval()


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_tao_per_stage_and_in_total(detector) -> None:
    bb = detector.backbone
    assert [_params(s) for s in bb.stages] == [19_488, 510_336, 2_036_480, 5_097_984, 41_425_920]
    assert sum(_params(n) for n in (bb.norm1, bb.norm2, bb.norm3)) == 1_792
    assert _params(bb) == 49_092_000
    assert _params(detector.encoder) == 11_262_720
    assert _params(detector.decoder) == 7_316_493
    assert _params(detector) == 67_671_213


def test_state_dict_has_taos_809_entries_and_768_in_export_mode(detector) -> None:
    sd = to_tao_state_dict(detector)
    assert len(sd) == 809
    assert sum(1 for _ in detector.parameters()) == 560 and len(list(detector.buffers())) == 249
    counters = [k for k in sd if k.endswith(_COUNTER) and k.startswith("model.model.backbone.")]
    assert len(counters) == 41  # every backbone BatchNorm tracks batches, as in TAO
    frozen = EfficientViTL2(freeze_norm=True)
    keys = [f"model.model.backbone.{k}" for k in frozen.state_dict()]
    backbone_keys = [k for k in sd if k.startswith("model.model.backbone.")]
    assert keys == [k for k in backbone_keys if not k.endswith(_COUNTER)]
    assert len(sd) - len(counters) == 768


# key -> shape, from the facts file (prefix model.model.backbone.)
TAO_KEYS = {
    "stages.0.op_list.0.conv.weight": [32, 3, 3, 3],
    "stages.0.op_list.0.norm.running_var": [32],
    "stages.0.op_list.1.main.conv1.conv.weight": [32, 32, 3, 3],
    "stages.0.op_list.1.main.conv2.norm.weight": [32],
    "stages.1.op_list.0.main.spatial_conv.conv.weight": [512, 32, 3, 3],
    "stages.1.op_list.0.main.point_conv.conv.weight": [64, 512, 1, 1],
    "stages.1.op_list.0.main.point_conv.norm.num_batches_tracked": [],
    "stages.2.op_list.1.main.spatial_conv.conv.weight": [512, 128, 3, 3],
    "stages.3.op_list.0.main.inverted_conv.conv.weight": [2048, 128, 1, 1],
    "stages.3.op_list.0.main.inverted_conv.conv.bias": [2048],
    "stages.3.op_list.0.main.depth_conv.conv.weight": [2048, 1, 3, 3],
    "stages.3.op_list.8.main.point_conv.conv.weight": [256, 1024, 1, 1],
    "stages.3.op_list.8.main.point_conv.norm.running_mean": [256],
    "stages.4.op_list.0.main.inverted_conv.conv.weight": [6144, 256, 1, 1],
    "stages.4.op_list.0.main.point_conv.conv.weight": [512, 6144, 1, 1],
    "stages.4.op_list.1.context_module.main.qkv.conv.weight": [1536, 512, 1, 1],
    "stages.4.op_list.1.context_module.main.aggreg.0.0.weight": [1536, 1, 5, 5],
    "stages.4.op_list.1.context_module.main.aggreg.0.1.weight": [1536, 32, 1, 1],
    "stages.4.op_list.1.context_module.main.proj.conv.weight": [512, 1024, 1, 1],
    "stages.4.op_list.1.context_module.main.proj.norm.bias": [512],
    "stages.4.op_list.8.local_module.main.inverted_conv.conv.weight": [3072, 512, 1, 1],
    "stages.4.op_list.8.local_module.main.depth_conv.conv.weight": [3072, 1, 3, 3],
    "norm1.weight": [128],
    "norm2.bias": [256],
    "norm3.weight": [512],
}


def test_key_names_and_shapes_are_taos(detector) -> None:
    sd = to_tao_state_dict(detector)
    shapes = {k: list(sd["model.model.backbone." + k].shape) for k in TAO_KEYS}
    assert shapes == TAO_KEYS
    assert list(sd["model.model.encoder.input_proj.0.0.weight"].shape) == [256, 128, 1, 1]
    assert list(sd["model.model.encoder.input_proj.2.0.weight"].shape) == [256, 512, 1, 1]
    # no conv biases except the MBConvs' first two convs; no classifier head
    biased = {k.rsplit(".", 3)[-3] for k in sd if k.endswith("conv.bias") and ".backbone." in k}
    assert biased == {"inverted_conv", "depth_conv"}
    assert not any(".head." in k for k in sd if ".backbone." in k)
    assert infer_architecture(sd).backbone == "efficientvit_l2"


@pytest.mark.parametrize(("hw", "grids"), [
    ((640, 640), [(80, 80), (40, 40), (20, 20)]),
    ((544, 960), [(68, 120), (34, 60), (17, 30)]),
])  # fmt: skip
def test_outputs_are_128_256_512_channels_at_strides_8_16_32(hw, grids) -> None:
    bb = EfficientViTL2().eval()
    assert bb.out_channels == [128, 256, 512] and bb.out_strides == [8, 16, 32]
    with torch.no_grad():
        outs = bb(torch.rand(1, 3, *hw))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, *g) for c, g in zip((128, 256, 512), grids, strict=True)
    ]
    # each output went through its channel LayerNorm: zero mean, unit variance per position
    for o in outs:
        assert o.mean(1).abs().max() < 1e-4 and (o.var(1, unbiased=False) - 1).abs().max() < 0.05


def _reference_attention(mla: LiteMLA, x: torch.Tensor) -> torch.Tensor:
    """The facts file's description, written out per head on ``[C, N]`` matrices: 32 heads of
    96 contiguous channels (plain heads first), q | k | v inside a head, ReLU on q and k,
    ``(v_padded k^T) q`` divided by its ones row, eps 1e-15, then ``proj``."""
    B, _, H, W = x.shape
    with torch.no_grad():
        qkv = F.conv2d(x, mla.qkv.conv.weight)
        branch = mla.aggreg[0]
        agg = F.conv2d(F.conv2d(qkv, branch[0].weight, padding=2, groups=1536),
                       branch[1].weight, groups=48)  # fmt: skip
        allc = torch.cat([qkv, agg], 1).reshape(B, 3072, H * W).double()
        heads = []
        for h in range(32):
            chunk = allc[:, 96 * h : 96 * (h + 1)]
            q, k, v = chunk[:, :32].relu(), chunk[:, 32:64].relu(), chunk[:, 64:]
            v_pad = torch.cat([v, torch.ones_like(v[:, :1])], 1)  # [B, 33, N]
            out = (v_pad @ k.transpose(1, 2)) @ q  # [B, 33, N]
            heads.append(out[:, :32] / (out[:, 32:] + 1e-15))
        y = torch.cat(heads, 1).float().reshape(B, 1024, H, W)
        return mla.proj(y)


def _random_mla(seed: int = 0) -> LiteMLA:
    torch.manual_seed(seed)
    mla = LiteMLA(512)
    for p in mla.parameters():
        torch.nn.init.normal_(p, std=0.05)
    mla.proj.norm.running_mean.normal_()
    mla.proj.norm.running_var.uniform_(0.5, 2)
    return mla.eval()


@pytest.mark.parametrize("hw", [(17, 30), (4, 4)])  # linear path (510 > 32), quadratic (16)
def test_attention_matches_the_head_layout_measured_on_tao(hw) -> None:
    mla = _random_mla()
    x = torch.randn(2, 512, *hw)
    with torch.no_grad():
        ours = mla(x)
    ref = _reference_attention(mla, x)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), (ours - ref).abs().max()


def test_the_wrong_head_split_is_detected() -> None:
    """[q of every head | k | v] instead of per-head q|k|v gives other outputs: the check above
    can fail."""
    mla = _random_mla()
    x = torch.randn(1, 512, 17, 30)
    with torch.no_grad():
        qkv = mla.qkv(x)
        allc = torch.cat([qkv, mla.aggreg[0](qkv)], 1).reshape(1, 3, 32, 32, -1)  # qkv-major
        q, k, v = (allc[:, i].transpose(-1, -2) for i in range(3))
        wrong = mla.proj(
            linear_attention(q.relu(), k.relu(), v)
            .transpose(-1, -2)
            .reshape(x.shape[0], 1024, 17, 30)
        )
        right = mla(x)
    assert (wrong - right).abs().max() > 100 * 1e-4  # 100x the tolerance above


def test_linear_and_quadratic_forms_agree_and_eps_guards_zero_denominators() -> None:
    torch.manual_seed(1)
    q, k, v = torch.rand(2, 4, 40, 32), torch.rand(2, 4, 40, 32), torch.randn(2, 4, 40, 32)
    lin = linear_attention(q, k, v)
    att = q @ k.transpose(-1, -2)
    quad = (att / (att.sum(-1, keepdim=True) + 1e-15)) @ v
    assert torch.allclose(lin, quad, atol=1e-5)
    zero = linear_attention(torch.zeros_like(q), k, v)
    assert torch.isfinite(zero).all() and zero.abs().max() == 0


def test_attention_core_runs_in_float32_under_fp16_autocast() -> None:
    """The core ignores autocast (TAO disables it there) and upcasts half inputs: its result
    under FP16 autocast is the float32 one for the same inputs."""
    torch.manual_seed(2)
    q, k, v = (torch.rand(1, 32, 510, 32) * 4 for _ in range(3))
    ref = linear_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.float16):
        auto = linear_attention(q, k, v)
    assert auto.dtype == torch.float32 and torch.equal(auto, ref)
    half = linear_attention(q.half(), k.half(), v.half())
    assert half.dtype == torch.float16
    exact = linear_attention(q.half().float(), k.half().float(), v.half().float())
    assert torch.allclose(half.float(), exact, atol=2e-3, rtol=2e-3)
    # the same sums taken in FP16 lose far more: what the float32 core avoids
    naive = q.half() @ (k.half().transpose(-1, -2) @ F.pad(v.half(), (0, 1), value=1.0))
    assert (
        not torch.isfinite(naive).all()
        or (naive[..., :-1] / naive[..., -1:]).float().sub(exact).abs().max()
        > (half.float() - exact).abs().max()
    )


def _bundle(backbone_sd: dict[str, torch.Tensor], layout: str) -> dict:
    """The key layouts people have for a backbone file."""
    if layout == "bare":
        return dict(backbone_sd)
    if layout == "backbone":  # MIT's classifier layout (plus its head, ignored)
        return {"state_dict": {**{f"backbone.{k}": v for k, v in backbone_sd.items()},
                               "head.linear.weight": torch.zeros(1000, 512)}}  # fmt: skip
    if layout == "model.backbone":
        return {"model": {f"model.backbone.{k}": v for k, v in backbone_sd.items()}}
    if layout == "ddp":
        return {f"module.backbone.{k}": v for k, v in backbone_sd.items()}
    assert layout == "tao"  # a full TAO detector checkpoint
    return {"state_dict": {f"model.model.backbone.{k}": v for k, v in backbone_sd.items()},
            "tao_model": "rtdetr"}  # fmt: skip


@pytest.mark.parametrize("layout", ["bare", "backbone", "model.backbone", "ddp", "tao"])
def test_pretrained_backbone_loads_completely_in_every_key_layout(
    tmp_path: Path, layout: str, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(3)
    source = EfficientViTL2()
    for p in source.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "backbone.pth"
    torch.save(_bundle(source.state_dict(), layout), path)
    target = EfficientViTL2()
    with caplog.at_level("INFO", logger="rtdetr_trainer.model.weights"):
        report = load_backbone_weights(target, path)  # the safe loader reads the file
    assert len(report.loaded) == 348 and not report.missing
    assert "loaded 348 of 348 EfficientViTL2 tensors" in caplog.text
    got, want = target.state_dict(), source.state_dict()
    attention = [k for k in want if "context_module" in k or "local_module" in k]
    assert len(attention) == 8 * (9 + 10)  # all in the 8 attention blocks: TAO's loader drops them
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_pretrained_backbone_path_through_the_spec_loads_and_keeps_bn_trainable(
    tmp_path: Path,
) -> None:
    torch.manual_seed(4)
    source = EfficientViTL2()
    for p in source.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "effvit_l2.pth"
    torch.save(_bundle(source.state_dict(), "backbone"), path)
    cfg = ModelConfig(backbone="efficientvit_l2", pretrained_backbone_path=str(path))
    model = build_model(cfg, 7, (64, 64))
    key = "stages.4.op_list.5.context_module.main.aggreg.0.1.weight"
    assert torch.equal(model.backbone.state_dict()[key], source.state_dict()[key])
    # TAO freezes nothing and keeps BatchNorm for this backbone
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert sum(1 for k in model.backbone.state_dict() if k.endswith(_COUNTER)) == 41


def test_a_resnet_file_is_refused_as_an_efficientvit_backbone(tmp_path: Path) -> None:
    from rtdetr_trainer.model.backbone import ResNet

    path = tmp_path / "r18.pth"
    torch.save(ResNet(18).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"EfficientViTL2.*stages\.0\.op_list"):
        load_backbone_weights(EfficientViTL2(), path)


def test_tao_checkpoints_load_strictly_both_ways(tmp_path: Path, detector) -> None:
    """A TAO training checkpoint (809 entries) and an export-mode one (768: no BN counters)
    load strictly into the model built from the spec, and ours is TAO's layout."""
    sd = to_tao_state_dict(detector)
    trained = {"state_dict": sd, "tao_model": "rtdetr", "epoch": 3}
    bb_counter = [k for k in sd if k.startswith("model.model.backbone.") and k.endswith(_COUNTER)]
    deploy = {"state_dict": {k: v for k, v in sd.items() if k not in bb_counter},
              "tao_model": "rtdetr"}  # fmt: skip
    assert len(deploy["state_dict"]) == 768
    from rtdetr_trainer.model.backbone import _frozen_bn

    models = {}
    for freeze in (False, True):  # the training model and an export-mode one
        models[freeze] = build_model(ModelConfig(backbone="efficientvit_l2"), 7, (640, 640))
        if freeze:
            _frozen_bn(models[freeze].backbone)
    for name, ckpt in (("train", trained), ("deploy", deploy)):
        path = tmp_path / f"{name}.pth"
        torch.save(ckpt, path)
        for freeze, model in models.items():
            assert load_strict(model, path) == "tao"
            got = model.state_dict()
            key = "backbone.stages.4.op_list.8.context_module.main.qkv.conv.weight"
            assert torch.equal(got[key], detector.state_dict()[key])
            assert len(got) == (768 if freeze else 809)


def test_a_resnet_checkpoint_is_named_as_such(detector) -> None:
    r50 = build_model(ModelConfig(backbone="resnet_50"), 7, (64, 64))
    with pytest.raises(CheckpointMismatchError, match="looks like resnet_50") as err:
        load_strict(detector, {"state_dict": to_tao_state_dict(r50), "tao_model": "rtdetr"})
    assert "efficientvit_l2" in str(err.value)


def test_frozen_backbone_stays_in_eval_mode_and_folds_its_norms() -> None:
    bb = EfficientViTL2(train_backbone=False).train()
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    trainable = EfficientViTL2().eval()
    frozen = EfficientViTL2(freeze_norm=True)
    frozen.load_state_dict(trainable.state_dict())
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = trainable(x), frozen.eval()(x)
    assert all(torch.allclose(u, v, atol=1e-4) for u, v in zip(a, b, strict=True))
    assert math.isclose(float(a[2].std()), 1.0, rel_tol=0.05)


def test_return_interm_indices_other_than_taos_are_refused() -> None:
    with pytest.raises(ValueError, match=r"return_interm_indices must be \[1, 2, 3\]"):
        EfficientViTL2((0, 1, 2))
