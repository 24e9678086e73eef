"""TAO's parameter groups (with lr_backbone really applied), the schedule, freezing and EMA."""

from __future__ import annotations

import math

import pytest
import torch

from rtdetr_spec import ModelConfig
from rtdetr_spec.train import OptimConfig
from rtdetr_trainer.engine.ema import ModelEMA
from rtdetr_trainer.engine.optim import (
    LRSchedule,
    apply_freeze,
    build_optimizer,
    group_of,
    param_groups,
)
from rtdetr_trainer.errors import UserInputError
from rtdetr_trainer.model.build import build_model
from tests.trainer.trainer_fixtures import TINY_MODEL


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(**TINY_MODEL), 7, (64, 64))


def test_lr_backbone_applies_to_every_backbone_parameter(model: torch.nn.Module) -> None:
    cfg = OptimConfig(lr=1e-4, lr_backbone=1e-5, weight_decay=1e-4)
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    backbone_ids = {id(p) for n, p in model.named_parameters() if n.startswith("backbone.")}
    assert backbone_ids and {id(p) for p in groups["backbone"]["params"]} == backbone_ids
    assert groups["backbone"]["lr"] == 1e-5 and groups["default"]["lr"] == 1e-4
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0
    assert groups["decoder_no_decay"]["weight_decay"] == 0.0
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(model.parameters()))
    opt = build_optimizer(model, cfg)
    assert opt.param_groups[0]["lr"] == 1e-5


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("backbone.layer1.0.bn1.weight", "backbone"),
        ("encoder.fpn_blocks.0.conv1.norm.weight", "encoder_no_decay"),
        ("encoder.input_proj.0.0.weight", "default"),
        ("decoder.dec_score_head.0.bias", "decoder_no_decay"),
        ("decoder.decoder.layers.0.norm1.weight", "decoder_no_decay"),
        ("decoder.decoder.layers.0.linear1.weight", "default"),
    ],
)
def test_group_selectors(name: str, group: str) -> None:
    assert group_of(name) == group


def test_schedule_multistep_steplr_and_warmup() -> None:
    ms = LRSchedule([1.0, 0.1], "MultiStep", [2, 4], 1000, 0.1, warmup_steps=0)
    assert [round(ms.lrs(e, 100)[0], 6) for e in range(6)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    st = LRSchedule([1.0], "StepLR", [], 3, 0.5, warmup_steps=4)
    assert st.lrs(3, 100) == [0.5] and st.lrs(0, 0) == [0.25] and st.lrs(0, 3) == [1.0]


def test_freeze_prefixes_and_unknown_prefix() -> None:
    torch.manual_seed(0)
    m = build_model(ModelConfig(**TINY_MODEL), 7, (64, 64))
    n = apply_freeze(m, ["model.model.backbone", "encoder.input_proj"])
    frozen = {name for name, p in m.named_parameters() if not p.requires_grad}
    assert n == len(frozen) > 0
    assert all(f.startswith(("backbone.", "encoder.input_proj.")) for f in frozen)
    assert {g["name"] for g in param_groups(m, OptimConfig())} == {
        "encoder_no_decay",
        "decoder_no_decay",
        "default",
    }
    with pytest.raises(UserInputError, match=r"train\.freeze: 'decoder\.nope' names no module"):
        apply_freeze(m, ["decoder.nope"])


def test_ema_follows_weights_with_warmup() -> None:
    lin = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(lin.weight)
    ema = ModelEMA(lin, decay=0.9, warmup=10)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)
    d = 0.9 * (1 - math.exp(-1 / 10))
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1 - d))
    assert ema.state_dict()["updates"] == 1
