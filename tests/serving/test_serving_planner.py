"""Capacity planning: the model card's numbers, derivation at other FPS, impossible targets, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rtdetr_serving.catalog import CATALOG_ENV, load_catalog
from rtdetr_serving.cli import main
from rtdetr_serving.errors import PlanningError
from rtdetr_serving.planner import (
    Measurement,
    capacity,
    plan_all,
    plan_replicas,
)


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)


def test_model_card_examples() -> None:
    cat = load_catalog()
    l4 = plan_replicas(cat.get("L4"), 30, 200)
    assert (l4.replicas, l4.streams_per_replica, l4.capacity_streams) == (23, 9, 207)
    h100 = plan_replicas(cat.get("H100"), 15, 1000)
    assert (h100.replicas, h100.streams_per_replica) == (7, 153)
    assert h100.source == "table" and h100.images_per_second_per_replica == 153 * 15


def test_table_fps_use_the_table_and_derivation_agrees_with_it() -> None:
    for g in load_catalog().gpus:
        for fps, table in ((30, g.streams.fps30), (15, g.streams.fps15)):
            assert capacity(g, fps).streams_per_gpu == table
            # The lower-bound throughput reproduces the table too (the table is consistent).
            assert math.floor(g.throughput_lower_bound() / fps + 1e-9) == table, g.name


def test_derived_capacity_never_overpromises() -> None:
    cat = load_catalog()
    for g in cat.gpus:
        previous = None
        for fps in (5, 7.5, 10, 12, 20, 24, 25, 29.97, 60):
            c = capacity(g, fps)
            assert c.source == ("estimate" if g.estimate is not None else "derived")
            assert c.streams_per_gpu * fps <= g.throughput_lower_bound() + 1e-6
            assert (c.streams_per_gpu + 1) * fps > g.throughput_lower_bound()
            if previous is not None:
                assert c.streams_per_gpu <= previous
            previous = c.streams_per_gpu
    # H100: T >= max(76*30, 153*15) = 2295 images/s -> 91 streams at 25 FPS.
    assert capacity(cat.get("H100"), 25).streams_per_gpu == 91


def test_measurement_uses_the_model_card_formula() -> None:
    l4 = load_catalog().get("L4")
    m = Measurement(latency_ms=30, batch=8)  # 266.7 images/s
    p = plan_replicas(l4, 30, 200, measurement=m)
    assert p.streams_per_replica == 8 and p.replicas == 25 and p.source == "measured"


def test_impossible_and_invalid_targets() -> None:
    l4 = load_catalog().get("L4")
    with pytest.raises(PlanningError, match="cannot sustain one stream at 400 FPS"):
        plan_replicas(l4, 400, 1)
    with pytest.raises(PlanningError, match="fps must be a positive"):
        plan_replicas(l4, 0, 1)
    with pytest.raises(PlanningError, match="streams must be >= 0"):
        plan_replicas(l4, 30, -1)
    with pytest.raises(PlanningError, match="headroom"):
        plan_replicas(l4, 30, 1, headroom=1.0)
    assert plan_replicas(l4, 30, 0).replicas == 0
    assert plan_replicas(l4, 30, 200, headroom=0.2).streams_per_replica == 7
    results = plan_all(load_catalog(), 280, 10)
    assert any(isinstance(r, PlanningError) for r in results)
    assert not all(isinstance(r, PlanningError) for r in results)


def test_cli_plan_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--gpu", "L4", "--fps", "30", "--streams", "200", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["plans"][0]["replicas"] == 23 and doc["plans"][0]["streams_per_replica"] == 9
    assert main(["plan", "--gpu", "H100", "--fps", "15", "--streams", "1000"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("H100"))
    assert row.split()[:4] == ["H100", "153", "7", "1071"]
    assert main(["plan", "--fps", "30", "--streams", "200"]) == 0
    out = capsys.readouterr().out
    for g in load_catalog().gpus:
        assert g.name in out
    assert main(["plan", "--gpu", "L4", "--fps", "30", "--streams", "9", "--latency-ms", "30"]) == 1
    assert "go together" in capsys.readouterr().err
    assert main(["plan", "--gpu", "L5", "--fps", "30", "--streams", "9"]) == 1
    assert "did you mean L4" in capsys.readouterr().err


def test_console_script_plan() -> None:
    exe = Path(sys.executable).with_name("rtdetr-serve")
    proc = subprocess.run(
        [str(exe), "plan", "--gpu", "L4", "--fps", "30", "--streams", "200", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["plans"][0]["replicas"] == 23
    bad = subprocess.run(
        [str(exe), "plan", "--gpu", "L4", "--fps", "400", "--streams", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "cannot sustain one stream" in bad.stderr
