"""bench/fp16_convert.py in its quick configuration (R18 at 64x64): the FP32 export, both
conversions, the graphs compared, the table showing the JSON's figures. Not a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_converts_both_ways_to_the_same_graph(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(REPO / "bench" / "fp16_convert.py"), "--quick", "--json-out"]
    proc = subprocess.run(
        [*cmd, str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = json.loads(out.read_text())["rows"]
    assert row["model"] == "r18" and row["identical"] is True
    assert row["fp16_nodes"] >= row["fp32_nodes"] > 100  # casts added, nothing lost
    assert row["one_pass_s"] > 0 and row["library_s"] > 0
    line = f"| {row['library_s']:.1f} s | {row['one_pass_s']:.1f} s | yes |"
    assert line in proc.stdout
