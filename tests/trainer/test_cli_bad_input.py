"""``rtdetr <task>``: a secret is never echoed, and a bad results folder or process count is
refused up front, with one line and exit 2, before any work (in-process ``main``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdetr_trainer.cli import main
from tests.trainer.trainer_fixtures import write_coco

MODEL_CARD_SPEC = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
)
SECRET = "hunter2-Zq9"


def _data_args(tmp_path: Path) -> list[str]:
    image_dir, train = write_coco(tmp_path / "data")
    _, val = write_coco(tmp_path / "data", name="val.json")
    return [
        f"dataset.train_data_sources.image_dir={image_dir}",
        f"dataset.train_data_sources.json_file={train}",
        f"dataset.val_data_sources.image_dir={image_dir}",
        f"dataset.val_data_sources.json_file={val}",
    ]


@pytest.mark.parametrize("override", [f"encryption_key={SECRET}", f"encryption_key={SECRET} x"])
def test_an_encryption_key_override_is_refused_without_echoing_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    override: str,
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv("RTDETR_TERMINATION_LOG", str(log))
    code = main(["train", f"-e={MODEL_CARD_SPEC}", *_data_args(tmp_path), override])
    err = capsys.readouterr().err
    assert code == 2
    assert "encryption_key" in err and SECRET not in err
    assert SECRET not in log.read_text()  # the message the operator copies into the CR status
    assert json.loads(log.read_text())["status"] == "FAILURE"
