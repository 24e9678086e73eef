"""The benchmark suite's machinery end to end in its micro configuration (R18, 64x64, one
iteration per cell): every section runs, the report and the raw JSON are written, and the
report's figures are the JSON's. Not a timed test: the numbers are meaningless at this size."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_micro_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--micro", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.with_suffix(".json").read_text())
    doc = out.read_text()

    assert res["mode"] == "micro"
    assert set(res["sections"]) == {
        "inference", "backbones", "training", "data", "evaluation", "ddp", "profile"
    }  # fmt: skip
    inference = res["sections"]["inference"]["cells"]
    assert {c["spec"]["impl"] for c in inference} == {"ours", "ort", "hf"}
    for cell in inference + res["sections"]["training"]["cells"]:
        assert "error" not in cell, cell
        assert len(cell["times"]) == 1 and cell["times"][0] > 0
        rate = cell["spec"]["batch"] / statistics.median(cell["times"])
        assert f"{rate:.2f}" in doc  # the report shows the measured number
    assert res["sections"]["inference"]["export"]["path"].endswith(".onnx")
    backbones = res["sections"]["backbones"]["cells"]
    assert [c["spec"]["backbone"] for c in backbones] == ["resnet_18", "efficientvit_l2"]
    assert [c.get("params") for c in backbones][1] > 60e6, backbones  # L2 detector, 67.67 M
    for cell in backbones:
        assert "error" not in cell and f"{1 / statistics.median(cell['times']):.2f}" in doc

    ev = res["sections"]["evaluation"]["result"]
    assert set(ev["median_s"]) == {"pycocotools", "faster-coco-eval"}
    assert ev["max_abs_diff_stats"] <= 1e-6

    ddp = res["sections"]["ddp"]["runs"]
    assert [r["spec"]["world"] for r in ddp] == [1, 2]
    assert all("times" in r for r in ddp)
    assert "Efficiency (2 processes / 1 process" in doc

    profile = res["sections"]["profile"]["cells"]
    assert profile and profile[0]["top"], profile
    data = res["sections"]["data"]["result"]
    assert "rows" in data or "skipped" in data
    # Machine and versions are recorded; no GPU figure is invented.
    assert res["machine"]["cpu_model"] in doc
    assert "transformers 5.23.0" in doc
    assert "Not measured on this machine" in doc or res["machine"]["gpu"]
