"""Estimated GPU types: scaled from a measured row by dense FP16 TFLOPS, marked as estimates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from rtdetr_serving.catalog import load_catalog
from rtdetr_serving.cli import main as serve_main
from rtdetr_serving.errors import CatalogError
from rtdetr_serving.planner import capacity, plan_replicas

CATALOG = load_catalog(use_env=False)


@pytest.mark.parametrize(
    ("name", "tflops"),
    [("T4", 65), ("A10", 125), ("A10G", 70), ("A30", 165), ("A2", 18), ("RTX-4090", 165.2)],
)
def test_estimates_are_scaled_from_l4_lower_bound(name: str, tflops: float) -> None:
    gpu, l4 = CATALOG.get(name), CATALOG.get("L4")
    assert gpu.estimate is not None and gpu.estimate.scaled_from == "L4"
    # L4's table (9 @30, 18 @15) bounds its throughput below by 270 images/s.
    t = l4.throughput_lower_bound() * tflops / gpu.estimate.reference_fp16_dense_tflops
    assert l4.throughput_lower_bound() == 270
    assert (gpu.streams.fps30, gpu.streams.fps15) == (math.floor(t / 30), math.floor(t / 15))
    assert gpu.gpu_product_labels, "an estimated type must still be pinnable to its nodes"


def test_model_card_rows_are_not_estimates() -> None:
    measured = {g.name for g in CATALOG.gpus if g.estimate is None}
    assert {"H100", "A100", "L40", "L40S", "L4", "GB200", "DGX-SPARK"} <= measured


def test_capacity_of_an_estimate_says_so() -> None:
    assert capacity(CATALOG.get("T4"), 30).source == "estimate"
    assert capacity(CATALOG.get("T4"), 10).source == "estimate"
    assert capacity(CATALOG.get("L4"), 30).source == "table"
    p = plan_replicas(CATALOG.get("T4"), 30, 20)
    assert (p.streams_per_replica, p.replicas, p.source) == (4, 5, "estimate")


def test_plan_cli_accepts_t4_and_marks_the_estimate(capsys) -> None:
    assert serve_main(["plan", "--gpu", "T4", "--streams", "20", "--fps", "30"]) == 0
    out = capsys.readouterr().out
    assert "T4" in out and "estimate" in out
    assert serve_main(["catalog"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("T4 "))
    assert "~4" in line and "~9" in line


def _user(tmp_path: Path, entry: dict) -> Path:
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump({"gpus": [entry]}))
    return f


def test_a_measurement_replaces_an_estimate(tmp_path: Path) -> None:
    f = _user(tmp_path, {"name": "T4", "streams": {"fps30": 5, "fps15": 11}, "estimate": None})
    t4 = load_catalog([f], use_env=False).get("T4")
    assert t4.estimate is None and (t4.streams.fps30, t4.streams.fps15) == (5, 11)
    assert capacity(t4, 30).source == "table"


def test_a_user_estimate_needs_a_measured_reference(tmp_path: Path) -> None:
    entry = {
        "name": "X9",
        "display_name": "X9",
        "gpu_product_labels": ["ACME-X9"],
        "compute_capability": "8.9",
        "memory_gib": 24,
        "estimate": {
            "scaled_from": "T4",
            "fp16_dense_tflops": 100,
            "reference_fp16_dense_tflops": 65,
        },
        "engine": {"opt_batch": 4, "max_batch": 8},
    }
    with pytest.raises(CatalogError, match=r"'X9': estimate\.scaled_from 'T4' must be a measured"):
        load_catalog([_user(tmp_path, entry)], use_env=False)
    entry["estimate"]["scaled_from"] = "H999"
    with pytest.raises(CatalogError, match="'H999' is not in the catalog"):
        load_catalog([_user(tmp_path, entry)], use_env=False)
    entry["estimate"] = {
        "scaled_from": "L4",
        "fp16_dense_tflops": 242,
        "reference_fp16_dense_tflops": 121,
    }
    x9 = load_catalog([_user(tmp_path, entry)], use_env=False).get("X9")
    assert (x9.streams.fps30, x9.streams.fps15) == (18, 36)
