"""The torch postprocessor equals the canonical numpy decoder used by ONNX/Triton serving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtdetr_serving.preprocess import decode_detections
from rtdetr_spec.model import ModelConfig
from rtdetr_trainer.model import build_postprocessor
from rtdetr_trainer.model.postprocess import PostProcessor


def _random_outputs(B: int, Q: int, C: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, Q, C, generator=g) * 3
    # Boxes partly beyond the image so clipping is exercised.
    centre = torch.rand(B, Q, 2, generator=g) * 1.2 - 0.1
    size = torch.rand(B, Q, 2, generator=g) * 0.6
    sizes = torch.stack([torch.randint(100, 2000, (B,), generator=g) for _ in range(2)], 1)
    return logits, torch.cat([centre, size], -1), sizes.float()


@pytest.mark.parametrize(
    ("B", "Q", "C", "num_select", "background"),
    [
        (2, 300, 7, 300, None),
        (3, 40, 5, 100, None),
        (2, 10, 4, 100, None),
        (2, 30, 8, 60, 0),
        (1, 5, 3, 50, 0),
    ],
)
def test_matches_numpy_decode_detections(B, Q, C, num_select, background):
    logits, boxes, sizes = _random_outputs(B, Q, C, seed=B * Q + C)
    got = PostProcessor(num_select, background_index=background)(
        {"pred_logits": logits, "pred_boxes": boxes}, sizes
    )
    want = decode_detections(
        logits.numpy(),
        boxes.numpy(),
        sizes.numpy(),
        num_select=num_select,
        background_index=background,
    )
    assert len(got) == len(want) == B
    for g, w in zip(got, want, strict=True):
        assert g["labels"].tolist() == w["labels"].tolist()
        np.testing.assert_allclose(g["scores"].numpy(), w["scores"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(g["boxes"].numpy(), w["boxes"], rtol=1e-5, atol=1e-3)
        if background is not None:
            assert background not in g["labels"].tolist()


def test_selects_over_queries_and_classes_and_scales_to_original_size():
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 1, 0] = 2.0
    logits[0, 1, 1] = 1.0  # same query, second class: both are kept
    logits[0, 2, 1] = 0.0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.25, 0.5, 0.5, 1.0], [0.9, 0.9, 0.4, 0.4]]])
    (det,) = PostProcessor(num_select=3)(
        {"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[200.0, 100.0]])
    )
    assert det["labels"].tolist() == [0, 1, 1]
    assert det["scores"][:2].tolist() == pytest.approx(
        [torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(1.0)).item()]
    )
    assert det["boxes"][0].tolist() == pytest.approx([0.0, 0.0, 100.0, 100.0])
    # Query 2 reaches past the bottom-right corner and is clipped to (200, 100).
    assert det["boxes"][2].tolist() == pytest.approx([140.0, 70.0, 200.0, 100.0])


def test_builder_uses_num_select_and_rejects_bad_sizes():
    post = build_postprocessor(ModelConfig(num_select=7))
    logits, boxes, sizes = _random_outputs(2, 20, 3, seed=0)
    out = post({"pred_logits": logits, "pred_boxes": boxes}, sizes)
    assert [len(d["scores"]) for d in out] == [7, 7]
    with pytest.raises(ValueError, match="width, height"):
        post({"pred_logits": logits, "pred_boxes": boxes}, sizes[:1])
