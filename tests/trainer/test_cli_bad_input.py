"""``rtdetr <task>``: a secret is never echoed, and a bad results folder or process count is
refused up front, with one line and exit 2, before any work (in-process ``main``)."""

from __future__ import annotations

import json
import os
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


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rtdetr ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("key", ["results_dir", "train.results_dir"])
def test_a_results_dir_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, key: str
) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    target = blocker / "train" if key == "results_dir" else blocker
    args = [*_data_args(tmp_path), f"{key}={blocker}", "train.num_gpus=1"]
    assert main(["train", f"-e={MODEL_CARD_SPEC}", *args]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{key}: {target}" in line and "not a folder" in line
    assert blocker.read_text() == "not a folder"


def _unwritable_folder() -> Path:
    """A folder in which nobody, root included, can create a file (sysfs)."""
    from rtdetr_trainer.results import unwritable

    sys_dir = Path("/sys")
    if not sys_dir.is_dir() or unwritable(sys_dir) is None:
        pytest.skip("no unwritable sysfs here")
    return sys_dir


def test_an_unwritable_results_dir_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ro = _unwritable_folder()
    args = [*_data_args(tmp_path), f"results_dir={ro / 'rtdetr-results'}", "train.num_gpus=1"]
    # The storage's fault, not the spec's: exit 3 (not retried blindly), like a failed write.
    assert main(["train", f"-e={MODEL_CARD_SPEC}", *args]) == 3
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot write {ro / 'rtdetr-results' / 'train'} (results_dir)" in line


def test_more_cpu_processes_than_cores_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: train.num_gpus is checked against the GPUs")
    cores = len(os.sched_getaffinity(0))
    args = [*_data_args(tmp_path), f"results_dir={tmp_path / 'results'}"]
    assert main(["train", f"-e={MODEL_CARD_SPEC}", *args, f"train.num_gpus={cores + 62}"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"train.num_gpus={cores + 62}" in line and f"{cores} usable CPU core(s)" in line
    assert not (tmp_path / "results").exists()  # refused before anything was written


def test_duplicate_keys_in_the_spec_file_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("train:\n  num_epochs: 80\n  seed: 1\n  num_epochs: 8\n")
    assert main(["train", f"-e={spec}", *_data_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train.num_epochs: duplicate key (lines 2 and 4)" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_refused_resume_leaves_experiment_yaml_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.trainer.trainer_fixtures import overrides_from, synth_dataset, tiny_spec_dict

    paths = synth_dataset(tmp_path / "data", num_images=6, width=64, height=64)
    earlier = tmp_path / "results" / "train" / "experiment.yaml"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("# the spec of the run whose checkpoints are here\n")
    bad = tmp_path / "half.pth"
    bad.write_bytes(b"PK\x03\x04 truncated")
    spec = tiny_spec_dict(tmp_path, paths, resume_training_checkpoint_path=str(bad))
    code = main(["train", f"-e={MODEL_CARD_SPEC}", *overrides_from(spec), "train.num_gpus=1"])
    assert code == 2
    assert "train.resume_training_checkpoint_path" in capsys.readouterr().err
    assert earlier.read_text() == "# the spec of the run whose checkpoints are here\n"


def test_status_log_messages_are_redacted(tmp_path: Path) -> None:
    from rtdetr_spec import ExperimentSpec
    from rtdetr_spec.redact import REDACTED
    from rtdetr_trainer.results import TaskResults, last_status

    spec = ExperimentSpec.model_validate({"results_dir": str(tmp_path)})
    results = TaskResults(spec, "evaluate")
    results.status("FAILURE", f"refused: api_token={SECRET}")
    status = last_status(results.status_file)
    assert status is not None and status["message"] == f"refused: api_token={REDACTED}"
