"""The model's structure against TAO's published facts, and forward/backward behaviour."""

from __future__ import annotations

import pytest
import torch

from rtdetr_spec.model import ModelConfig
from rtdetr_trainer.model import TargetError, build_criterion, build_model, total_loss
from rtdetr_trainer.model.backbone import FrozenBatchNorm2d
from tests.trainer._model_fixtures import one_thread, sample_targets, small_config

__all__ = ["one_thread"]

# TAO RT-DETR R50 at 7 classes (keys without the ``model.model.`` prefix).
TAO_R50_C7_SHAPES: dict[str, list[int]] = {
    "backbone.conv1.weight": [64, 3, 7, 7],
    "backbone.bn1.weight": [64],
    "backbone.bn1.bias": [64],
    "backbone.bn1.running_mean": [64],
    "backbone.bn1.running_var": [64],
    "backbone.bn1.num_batches_tracked": [],
    "backbone.layer1.0.conv1.weight": [64, 64, 1, 1],
    "backbone.layer1.0.conv2.weight": [64, 64, 3, 3],
    "backbone.layer1.0.conv3.weight": [256, 64, 1, 1],
    "backbone.layer1.0.bn3.weight": [256],
    "backbone.layer1.0.downsample.0.weight": [256, 64, 1, 1],
    "backbone.layer1.0.downsample.1.weight": [256],
    "backbone.layer1.0.downsample.1.running_var": [256],
    "backbone.layer4.2.conv3.weight": [2048, 512, 1, 1],
    "encoder.input_proj.2.0.weight": [256, 2048, 1, 1],
    "encoder.input_proj.2.1.weight": [256],
    "encoder.input_proj.2.1.running_mean": [256],
    "encoder.encoder.0.layers.0.self_attn.in_proj_weight": [768, 256],
    "encoder.encoder.0.layers.0.self_attn.in_proj_bias": [768],
    "encoder.encoder.0.layers.0.self_attn.out_proj.weight": [256, 256],
    "encoder.encoder.0.layers.0.linear1.weight": [1024, 256],
    "encoder.encoder.0.layers.0.linear2.weight": [256, 1024],
    "encoder.encoder.0.layers.0.norm1.weight": [256],
    "encoder.encoder.0.layers.0.norm2.weight": [256],
    "encoder.lateral_convs.0.conv.weight": [256, 256, 1, 1],
    "encoder.lateral_convs.0.norm.weight": [256],
    "encoder.fpn_blocks.0.conv1.conv.weight": [256, 512, 1, 1],
    "encoder.fpn_blocks.0.conv2.conv.weight": [256, 512, 1, 1],
    "encoder.fpn_blocks.0.bottlenecks.0.conv1.conv.weight": [256, 256, 3, 3],
    "encoder.fpn_blocks.0.bottlenecks.0.conv2.conv.weight": [256, 256, 1, 1],
    "encoder.downsample_convs.1.conv.weight": [256, 256, 3, 3],
    "encoder.pan_blocks.1.conv2.conv.weight": [256, 512, 1, 1],
    "decoder.input_proj.0.conv.weight": [256, 256, 1, 1],
    "decoder.input_proj.0.norm.weight": [256],
    "decoder.decoder.layers.0.self_attn.in_proj_weight": [768, 256],
    "decoder.decoder.layers.0.cross_attn.sampling_offsets.weight": [192, 256],
    "decoder.decoder.layers.0.cross_attn.attention_weights.weight": [96, 256],
    "decoder.decoder.layers.0.cross_attn.value_proj.weight": [256, 256],
    "decoder.decoder.layers.0.cross_attn.output_proj.weight": [256, 256],
    "decoder.decoder.layers.0.norm1.weight": [256],
    "decoder.decoder.layers.0.norm2.weight": [256],
    "decoder.decoder.layers.0.norm3.weight": [256],
    "decoder.decoder.layers.0.linear1.weight": [1024, 256],
    "decoder.decoder.layers.0.linear2.weight": [256, 1024],
    "decoder.denoising_class_embed.weight": [8, 256],
    "decoder.query_pos_head.layers.0.weight": [512, 4],
    "decoder.query_pos_head.layers.1.weight": [256, 512],
    "decoder.enc_output.0.weight": [256, 256],
    "decoder.enc_output.1.weight": [256],
    "decoder.enc_score_head.weight": [7, 256],
    "decoder.enc_score_head.bias": [7],
    "decoder.enc_bbox_head.layers.0.weight": [256, 256],
    "decoder.enc_bbox_head.layers.1.weight": [256, 256],
    "decoder.enc_bbox_head.layers.2.weight": [4, 256],
    **{f"decoder.dec_score_head.{i}.weight": [7, 256] for i in range(6)},
    **{f"decoder.dec_bbox_head.{i}.layers.2.weight": [4, 256] for i in range(6)},
}


def _params_m(model: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 2)


@pytest.fixture(scope="module")
def r50_c7():
    return build_model(ModelConfig(), 7, (640, 640))


def test_r50_matches_tao_parameter_count_and_entries(r50_c7):
    assert _params_m(r50_c7) == 42.78
    assert len(r50_c7.state_dict()) == 779
    assert round(sum(p.numel() for p in r50_c7.backbone.parameters()) / 1e6, 2) == 23.51
    assert round(sum(p.numel() for p in r50_c7.encoder.parameters()) / 1e6, 2) == 11.95
    assert round(sum(p.numel() for p in r50_c7.decoder.parameters()) / 1e6, 2) == 7.32


def test_r50_has_every_tao_sample_key_with_its_shape(r50_c7):
    sd = r50_c7.state_dict()
    missing = [k for k in TAO_R50_C7_SHAPES if k not in sd]
    assert not missing
    wrong = {k: list(sd[k].shape) for k, s in TAO_R50_C7_SHAPES.items() if list(sd[k].shape) != s}
    assert not wrong
    assert not any("anchor" in k or "pos_embed" in k for k in sd)


def test_r50_80_classes_parameter_count():
    assert _params_m(build_model(ModelConfig(), 80, (640, 640))) == 42.93


@pytest.mark.parametrize(("backbone", "channels"), [("resnet_18", 512), ("resnet_34", 512)])
def test_small_backbones_build_and_run(backbone, channels):
    model = build_model(ModelConfig(backbone=backbone), 3, (128, 128)).eval()
    assert model.backbone.out_channels == [channels // 4, channels // 2, channels]
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 128))
    assert out["pred_logits"].shape == (2, 300, 3)
    assert out["pred_boxes"].shape == (2, 300, 4)


@pytest.mark.slow
def test_r101_builds_and_runs():
    model = build_model(ModelConfig(backbone="resnet_101"), 7, (128, 128)).eval()
    assert model.backbone.out_channels == [512, 1024, 2048]
    assert len(model.backbone.layer3) == 23
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128))
    assert out["pred_logits"].shape == (1, 300, 7)


@pytest.mark.slow
def test_r50_eval_at_640(r50_c7):
    r50_c7.eval()
    with torch.no_grad():
        out = r50_c7(torch.rand(2, 3, 640, 640))
    assert set(out) == {"pred_logits", "pred_boxes"}
    assert out["pred_logits"].shape == (2, 300, 7)
    boxes = out["pred_boxes"]
    assert boxes.shape == (2, 300, 4)
    assert ((boxes >= 0) & (boxes <= 1)).all()


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return build_model(small_config(), 7, (128, 128))


TARGETS = sample_targets()


def test_eval_forward_small_input(r18):
    r18.eval()
    with torch.no_grad():
        out = r18(torch.rand(3, 3, 128, 128))
        other_size = r18(torch.rand(1, 3, 160, 192))
    assert out["pred_logits"].shape == (3, 50, 7)
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
    assert other_size["pred_boxes"].shape == (1, 50, 4)


def _check_training_step(model, cfg, dec_layers, num_queries, groups):
    model.train()
    model.zero_grad()
    criterion = build_criterion(cfg, 7)
    out = model(torch.rand(2, 3, 128, 128), TARGETS)
    assert len(out["aux_outputs"]) == dec_layers - 1
    assert len(out["enc_aux_outputs"]) == 1
    assert len(out["dn_aux_outputs"]) == dec_layers
    assert out["dn_meta"]["dn_num_split"] == [2 * 3 * groups, num_queries]
    assert out["dn_aux_outputs"][0]["pred_logits"].shape == (2, 2 * 3 * groups, 7)
    losses = criterion(out, TARGETS)
    assert len(losses) == 3 * (dec_layers + 1 + dec_layers)
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    # The padding class embedding row never gets gradient.
    assert (model.decoder.denoising_class_embed.weight.grad[7] == 0).all()


def test_training_forward_gives_finite_losses_and_gradients_everywhere(r18):
    _check_training_step(r18, small_config(), dec_layers=3, num_queries=50, groups=20 // 3)


@pytest.mark.slow
def test_training_step_with_tao_default_decoder():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet_18")
    model = build_model(cfg, 7, (128, 128))
    _check_training_step(model, cfg, dec_layers=6, num_queries=300, groups=100 // 3)


def test_training_without_any_box_skips_denoising(r18):
    r18.train()
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * 2
    out = r18(torch.rand(2, 3, 128, 128), empty)
    assert "dn_aux_outputs" not in out
    losses = build_criterion(small_config(), 7)(out, empty)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() == 0.0
    r18.zero_grad()
    total_loss(losses).backward()
    # Every trainable parameter takes part (DDP without find_unused_parameters).
    unused = [n for n, p in r18.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_training_under_cpu_bf16_autocast(r18):
    r18.train()
    r18.zero_grad()
    criterion = build_criterion(small_config(), 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = r18(torch.rand(2, 3, 128, 128), TARGETS)
        losses = criterion(out, TARGETS)
    loss = total_loss(losses)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in r18.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_channels_last_gives_the_same_features(r18):
    """Top-k query selection may reorder near-ties, so compare the encoder's outputs."""
    r18.eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        ref = r18.encoder(r18.backbone(x))
        r18.to(memory_format=torch.channels_last)
        got = r18.encoder(r18.backbone(x.contiguous(memory_format=torch.channels_last)))
        out = r18(x.contiguous(memory_format=torch.channels_last))
        r18.to(memory_format=torch.contiguous_format)
    for a, b in zip(ref, got, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    assert torch.isfinite(out["pred_boxes"]).all()


def test_pretrained_backbone_structure_freezes_stem_and_norms():
    cfg = small_config(pretrained_backbone_path="/nonexistent.pth")
    model = build_model(cfg, 7, (128, 128), load_backbone_weights=False)
    assert isinstance(model.backbone.bn1, FrozenBatchNorm2d)
    assert not model.backbone.conv1.weight.requires_grad
    assert model.backbone.layer1[0].conv1.weight.requires_grad
    keys = model.state_dict().keys()
    assert not any(k.startswith("backbone.") and k.endswith("num_batches_tracked") for k in keys)
    assert "encoder.input_proj.0.1.num_batches_tracked" in keys


def test_frozen_backbone_keeps_its_batchnorm_statistics():
    model = build_model(small_config(train_backbone=False), 7, (128, 128))
    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training and model.encoder.training
    before = model.backbone.bn1.running_mean.clone()
    model(torch.rand(1, 3, 128, 128), TARGETS[:1])
    assert torch.equal(before, model.backbone.bn1.running_mean)


@pytest.mark.slow  # the first checkpoint call imports torch._dynamo (seconds)
def test_activation_checkpointing_changes_nothing_but_memory():
    torch.manual_seed(0)
    cfg = small_config()
    plain = build_model(cfg, 7, (128, 128)).backbone
    ckpt = build_model(cfg, 7, (128, 128), activation_checkpoint=True).backbone
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 128, 128)
    for net in (plain, ckpt):
        net.train()
        sum(f.square().mean() for f in net(x)).backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    # Running statistics updated once per forward, not again by the recomputation.
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"labels": torch.tensor([7]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])},
            "label 7 outside 0..6",
        ),
        ({"labels": torch.tensor([-1]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}, "label -1"),
        (
            {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.0, 0.1]])},
            "positive size",
        ),
        ({"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 1.5, 0.1, 0.1]])}, "inside"),
        (
            {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])},
            r"\[2, 4\]",
        ),
        ({"labels": torch.tensor([1.0]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}, "integer"),
        ({"boxes": torch.zeros(0, 4)}, "needs 'labels'"),
    ],
)
def test_bad_targets_fail_loudly_naming_the_image(r18, target, message):
    r18.train()
    good = sample_targets()[0]
    with pytest.raises(TargetError, match=message) as err:
        r18(torch.rand(2, 3, 128, 128), [good, target])
    assert "target 1" in str(err.value)


def test_input_size_must_be_a_multiple_of_the_stride(r18):
    with pytest.raises(ValueError, match="multiples of 32"):
        r18(torch.rand(1, 3, 100, 128))


def test_freeze_paths_stop_gradients_and_unknown_paths_fail():
    model = build_model(small_config(), 7, (128, 128))
    names = model.freeze(["backbone.layer1", "encoder.input_proj.0"])
    assert "backbone.layer1.0.conv1.weight" in names and "encoder.input_proj.0.0.weight" in names
    assert not model.backbone.layer1[0].conv1.weight.requires_grad
    assert model.backbone.layer2[0].conv1.weight.requires_grad
    with pytest.raises(ValueError, match=r"'decoder\.nope'"):
        model.freeze(["decoder.nope"])
