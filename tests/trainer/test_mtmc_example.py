"""The example Job's command is one ``rtdetr`` accepts, with options the converter validates."""

from __future__ import annotations

from pathlib import Path

import yaml

from rtdetr_trainer.cli import build_parser
from rtdetr_trainer.data.mtmc.cli import options_from_args

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "convert-mtmc-job.yaml"


def test_the_example_job_runs_a_valid_conversion(tmp_path: Path) -> None:
    job = yaml.safe_load(EXAMPLE.read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["rtdetr"]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.tool, args.kind) == ("dataset", "convert", "mtmc")
    opts = options_from_args(args)  # split and filter options are checked here
    assert opts.split.mode == "time" and opts.frame_stride == 30
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert str(opts.scene).startswith("/scenes/") and mounts["/scenes"]["readOnly"]
    assert str(opts.output).startswith("/datasets/")
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2]
