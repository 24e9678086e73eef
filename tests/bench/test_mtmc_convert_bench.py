"""bench/mtmc_convert.py end to end in its quick configuration (two tiny H.264 scenes, two tiny
ground-truth files): the conversions run through the CLI in a sampled process tree, the index
and json.load children report their peaks, and the tables show the JSON's figures. Not a timed
test: the numbers are meaningless at this size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import mtmc_convert

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_measures_every_size(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(REPO / "bench" / "mtmc_convert.py"), "--quick"]
    cmd += ["--cache", str(tmp_path / "cache"), "--work", str(tmp_path), "--json-out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    cfg = res["config"]
    assert cfg["quick"] and (cfg["width"], cfg["height"]) == (160, 96)

    assert [r["frames"] for r in res["conversion"]] == cfg["frames"]
    for row in res["conversion"]:
        assert row["returncode"] == 0
        # every synthetic frame has ground truth: one image per camera and frame.
        assert row["images"] == cfg["cameras"] * row["frames"]
        assert row["boxes"] > 0 and row["h5_mib"] > 0 and row["frames_per_s"] > 0
        assert row["main_peak_mib"] > 10
        # the kernel's peak (largest single process) is at least the main process's VmHWM,
        # and the tree sum at least that process alone.
        assert row["ru_maxrss_mib"] >= row["main_peak_mib"] - 0.2
        assert row["tree_rss_sum_peak_mib"] >= row["main_peak_mib"]
        for w in row["workers"]:
            assert w["peak_mib"] >= w["rss_at_50pct_mib"] > 10
        assert f"| {row['frames']} | {row['images']} | {row['wall_s']} s |" in proc.stdout
    assert not any(Path(tmp_path).glob("bench-mtmc-out-*")), "conversion outputs are removed"

    assert [r["frames"] for r in res["ground_truth"]] == cfg["gt_frames"]
    for row in res["ground_truth"]:
        index, loaded = row["index"], row["json_load"]
        assert index["frames"] == loaded["frames"] == row["frames"]
        assert index["boxes"] == row["frames"] * cfg["gt_objects"] * cfg["gt_cameras"]
        for part in (index, loaded):
            assert part["peak_mib"] >= part["baseline_mib"] > 5
        assert f"| {row['frames']} | {index['boxes']} |" in proc.stdout
    assert res["machine"]["cpus"] >= 1 and res["machine"]["ram_gib"] > 0


def test_inputs_are_generated_once_per_key(tmp_path: Path) -> None:
    made: list[Path] = []

    def make(d: Path) -> None:
        made.append(d)
        (d / "x").write_text("1")

    first = mtmc_convert._cached(tmp_path, "k", make)
    second = mtmc_convert._cached(tmp_path, "k", make)
    assert len(made) == 1 and not first[2] and second[2]
    assert first[0] == second[0] and (first[0] / "x").read_text() == "1"
    assert first[1] == second[1]  # the generation time is the first run's, not the lookup's
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no partial directory left
