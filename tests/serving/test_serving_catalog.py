"""The GPU catalog: the model card's table, lookups, user extensions and loud failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rtdetr_serving.catalog import CATALOG_ENV, load_catalog
from rtdetr_serving.errors import AmbiguousGpuError, CatalogError, UnknownGpuError

# The model card's throughput table (RT-DETR + ResNet-50 v1.0.2 FP16): streams @30 / @15 FPS.
SEED_TABLE = {
    "GB200": (158, 316),
    "B200": (141, 282),
    "H200": (85, 170),
    "H100": (76, 153),
    "H100 NVL": (59, 118),
    "A100": (36, 72),
    "RTX PRO 6000 (Workstation)": (49, 99),
    "RTX PRO 6000 (Server)": (45, 90),
    "RTX 6000 Ada": (28, 56),
    "L40S": (29, 59),
    "L40": (25, 51),
    "L4": (9, 18),
    "DGX Spark": (7, 15),
    "IGX Thor T7000 (iGPU)": (9, 18),
    "IGX Thor Mini (T234 Orin iGPU)": (10, 21),
    "IGX Thor T7000 + RTX PRO 6000": (37, 75),
    "Jetson AGX Thor - T5000": (9, 18),
}


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)


def test_every_seed_gpu_with_its_numbers() -> None:
    cat = load_catalog()
    # Every model-card row, measured; the rest of the catalog is marked as estimates.
    assert len([g for g in cat.gpus if g.estimate is None]) == len(SEED_TABLE)
    for display, (s30, s15) in SEED_TABLE.items():
        g = cat.get(display)
        assert (g.streams.fps30, g.streams.fps15) == (s30, s15), display
        assert g.display_name == display
        assert g.engine.min_batch <= g.engine.opt_batch <= g.engine.max_batch
        for label in g.gpu_product_labels:
            assert " " not in label and label == label.strip()


def test_lookups_by_name_alias_label() -> None:
    cat = load_catalog()
    assert cat.get("H100").name == "H100"
    assert cat.get("h100-sxm").name == "H100"
    assert cat.get("h100 nvl").name == "H100-NVL"
    assert cat.get("NVIDIA-H100-80GB-HBM3").name == "H100"
    assert cat.get("nvidia-h100-nvl").name == "H100-NVL"
    for label in ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"]:
        assert cat.get(label).name == "A100"
    assert cat.get("NVIDIA-L4").name == "L4" and cat.get("NVIDIA-L40S").name == "L40S"
    assert cat.get("NVIDIA-L4-SHARED").name == "L4"  # time-sliced nodes
    assert cat.get("NVIDIA-GB10").name == "DGX-SPARK"
    assert cat.get("H100").compute_capability == "9.0" and cat.get("L4").compute_capability == "8.9"
    assert cat.get("A100").compute_capability == "8.0"


def test_ambiguous_and_unknown_names() -> None:
    cat = load_catalog()
    with pytest.raises(AmbiguousGpuError, match=r"IGX-THOR-T7000.*JETSON-AGX-THOR-T5000"):
        cat.get("NVIDIA-Thor")
    assert {g.name for g in cat.by_label("NVIDIA-Thor")} == {
        "IGX-THOR-T7000",
        "JETSON-AGX-THOR-T5000",
    }
    with pytest.raises(UnknownGpuError, match="did you mean L40S"):
        cat.get("L40SS")
    with pytest.raises(UnknownGpuError, match="did you mean NVIDIA-H100-80GB-HBM3"):
        cat.get("NVIDIA-H100-80GB-HBM")
    with pytest.raises(UnknownGpuError, match="known: GB200"):
        cat.get("TPU-v5")


def _write(path: Path, gpus: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"format": "rtdetr-gpu-catalog/v1", "gpus": gpus}))
    return path


def test_user_catalog_overrides_and_extends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = _write(
        tmp_path / "mine.yaml",
        [
            {"name": "L4", "engine": {"max_batch": 16}, "streams": {"fps30": 10, "fps15": 20}},
            {
                "name": "A10G",
                "display_name": "A10G",
                "gpu_product_labels": ["NVIDIA-A10G"],
                "compute_capability": 8.6,
                "memory_gib": 24,
                "throughput_ips": 400,
                "engine": {"opt_batch": 4, "max_batch": 8},
            },
        ],
    )
    cat = load_catalog([user])
    l4 = cat.get("L4")
    assert l4.engine.max_batch == 16 and l4.engine.opt_batch == 4  # merged field by field
    assert l4.streams.fps30 == 10 and l4.gpu_product_labels == ["NVIDIA-L4"]
    a10g = cat.get("nvidia-a10g")
    assert a10g.compute_capability == "8.6" and a10g.throughput_lower_bound() == 400
    monkeypatch.setenv(CATALOG_ENV, str(user))
    assert load_catalog().get("A10G").name == "A10G"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "L4", "streams": {"fps30": 10, "fps15": 30}}, "imply no common throughput"),
        ({"name": "L4", "engine": {"opt_batch": 32}}, "min_batch <= opt_batch <= max_batch"),
        ({"name": "L4", "compute_capability": "nine"}, "compute_capability"),
        ({"name": "L4", "gpu_memory": 3}, "gpu_memory"),
        (
            {
                "name": "X1",
                "display_name": "X1",
                "compute_capability": "8.0",
                "memory_gib": 8,
                "engine": {"opt_batch": 1, "max_batch": 1},
            },
            "give streams.fps30/fps15 or throughput_ips",
        ),
        (
            {
                "name": "X2",
                "display_name": "H100",
                "compute_capability": "8.0",
                "memory_gib": 8,
                "throughput_ips": 10,
                "engine": {"opt_batch": 1, "max_batch": 1},
            },
            "used by both",
        ),
    ],
)
def test_invalid_user_entries_are_named(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    user = _write(tmp_path / "bad.yaml", [entry])
    with pytest.raises(CatalogError, match=message) as e:
        load_catalog([user])
    assert "bad.yaml" in str(e.value)


def test_unreadable_catalog_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        load_catalog([tmp_path / "none.yaml"])
    (tmp_path / "a.yaml").write_text("gpus: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog([tmp_path / "a.yaml"])
    (tmp_path / "b.yaml").write_text("- just a list\n")
    with pytest.raises(CatalogError, match="'gpus' list"):
        load_catalog([tmp_path / "b.yaml"])
    (tmp_path / "c.yaml").write_text("format: other/v9\ngpus: []\n")
    with pytest.raises(CatalogError, match="other/v9"):
        load_catalog([tmp_path / "c.yaml"])
