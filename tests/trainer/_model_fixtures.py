"""Shared pieces for the model tests: a small configuration, sample targets, one CPU thread.

The test machine's cores are shared; a single intra-op thread avoids OpenMP oversubscription,
which otherwise makes small CPU steps ten times slower.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from rtdetr_spec.model import ModelConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_config(**overrides: object) -> ModelConfig:
    """R18 with a narrow transformer: the real code paths at a fraction of the cost."""
    values: dict[str, object] = {
        "backbone": "resnet_18",
        "hidden_dim": 64,
        "feat_channels": [64, 64, 64],
        "dim_feedforward": 128,
        "num_queries": 50,
        "num_select": 50,
        "dec_layers": 3,
        "dn_number": 20,
    }
    values.update(overrides)
    return ModelConfig(**values)


def sample_targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "labels": torch.tensor([1, 3, 6]),
            "boxes": torch.tensor(
                [[0.5, 0.5, 0.2, 0.3], [0.3, 0.3, 0.1, 0.1], [0.7, 0.6, 0.3, 0.2]]
            ),
        },
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.4, 0.5, 0.5, 0.5]])},
    ]
