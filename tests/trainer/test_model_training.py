"""End to end: the model, loss and matcher learn two synthetic objects from scratch."""

from __future__ import annotations

import pytest
import torch

from rtdetr_trainer.model import build_criterion, build_model, total_loss
from rtdetr_trainer.model.box_ops import box_cxcywh_to_xyxy, box_iou
from tests.trainer._model_fixtures import one_thread, small_config

__all__ = ["one_thread"]


@pytest.mark.slow
def test_overfits_two_images_to_the_right_class_and_box():
    torch.manual_seed(0)
    cfg = small_config()
    model = build_model(cfg, 3, (128, 128))
    criterion = build_criterion(cfg, 3)
    images = torch.full((2, 3, 128, 128), 0.1)
    images[0, 0, 20:60, 30:90] = 0.9  # red box, class 0
    images[1, 1, 64:120, 10:50] = 0.9  # green box, class 1
    targets = [
        {
            "labels": torch.tensor([0]),
            "boxes": torch.tensor([[60 / 128, 40 / 128, 60 / 128, 40 / 128]]),
        },
        {
            "labels": torch.tensor([1]),
            "boxes": torch.tensor([[30 / 128, 92 / 128, 40 / 128, 56 / 128]]),
        },
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-4, weight_decay=1e-4)
    model.train()
    first = None
    for _ in range(60):
        loss = total_loss(criterion(model(images, targets), targets))
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.1)
        optimizer.step()
    assert loss.item() < 0.6 * first

    model.eval()
    with torch.no_grad():
        out = model(images)
    for b, target in enumerate(targets):
        scores = out["pred_logits"][b].sigmoid()
        best = scores.max(-1).values.argmax()
        assert scores[best].argmax().item() == target["labels"].item()
        box = box_cxcywh_to_xyxy(out["pred_boxes"][b, best][None])
        assert box_iou(box, box_cxcywh_to_xyxy(target["boxes"]))[0].item() > 0.5
