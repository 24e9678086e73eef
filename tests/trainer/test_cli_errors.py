"""The CLI's contract for bad input: one clear message naming the culprit, exit 2, results intact.

These run ``rtdetr_trainer.cli.main`` in-process (the launcher checks everything before it
starts a worker); one test runs the real ``rtdetr`` executable to check the process exit code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from rtdetr_trainer.cli import main
from tests.support import free_port
from tests.trainer.trainer_fixtures import synth_dataset

MODEL_CARD_SPEC = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clidata")
    synth_dataset(root, num_images=8, width=64, height=64)
    return root


def _data_args(root: Path, train_json: Path | None = None, image_dir: Path | None = None) -> list:
    images = image_dir or root / "images"
    return [
        f"dataset.train_data_sources.image_dir={images}",
        f"dataset.train_data_sources.json_file={train_json or root / 'annotations' / 'train.json'}",
        f"dataset.val_data_sources.image_dir={root / 'images'}",
        f"dataset.val_data_sources.json_file={root / 'annotations' / 'val.json'}",
        f"results_dir={root / 'results'}",
        "train.num_gpus=1",
    ]


def _copy(data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "d"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns("results"))
    return root


def _edit_train(root: Path, fn) -> Path:
    p = root / "annotations" / "train.json"
    d = json.loads(p.read_text())
    fn(d)
    p.write_text(json.dumps(d))
    return p


def test_required_keys_left_unset_exit_2_naming_them(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", f"-e={MODEL_CARD_SPEC}"]) == 2
    err = capsys.readouterr().err
    assert "dataset.train_data_sources.0.image_dir: required by `train`" in err
    assert "dataset.val_data_sources.json_file: required by `train`" in err
    assert "Traceback" not in err


def test_optional_unset_keys_warn_once_each(data: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["dataset", "validate", f"-e={MODEL_CARD_SPEC}", *_data_args(data)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning: train.pretrained_model_path is ??") == 1
    assert "gpu_id" not in captured.err  # export's keys are not train's business
    assert "dataset OK" in captured.out and "1->0 person" in captured.out


def test_unknown_override_key(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "-e", str(MODEL_CARD_SPEC), "train.optim.lr_backbon=1e-5"]) == 2
    assert "did you mean 'lr_backbone'" in capsys.readouterr().err


def test_export_of_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "export",
            f"-e={MODEL_CARD_SPEC}",
            f"export.checkpoint={tmp_path / 'x.pth'}",
            f"export.onnx_file={tmp_path / 'x.onnx'}",
            f"results_dir={tmp_path / 'results'}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"export.checkpoint: {tmp_path / 'x.pth'} does not exist" in err
    assert "Traceback" not in err and not (tmp_path / "x.onnx").exists()


def _missing_file(root: Path) -> str:
    (root / "images" / "train" / "train_00001.jpg").unlink()
    return "train_00001.jpg not found"


def _box_outside(root: Path) -> str:
    def f(d: dict) -> None:
        d["annotations"][0]["bbox"] = [60, 10, 30, 10]

    _edit_train(root, f)
    return "annotation id 1 (image id 1): box [x=60, y=10, w=30, h=10] lies outside the 64x64"


def _zero_box(root: Path) -> str:
    _edit_train(root, lambda d: d["annotations"][1].update(bbox=[1, 1, 0, 5]))
    return "annotation id 2 (image id 1): box [1, 1, 0, 5] has non-positive size"


def _unknown_category(root: Path) -> str:
    _edit_train(root, lambda d: d["annotations"][0].update(category_id=42))
    return "annotation id 1 has unknown category id 42"


def _duplicate_ids(root: Path) -> str:
    _edit_train(root, lambda d: d["images"][1].update(id=d["images"][0]["id"]))
    return "duplicate image id 1"


def _empty_json(root: Path) -> str:
    (root / "annotations" / "train.json").write_text("")
    return "train.json: the annotation file is empty"


def _no_images(root: Path) -> str:
    _edit_train(root, lambda d: d.update(images=[], annotations=[]))
    return "train.json: the annotation file lists no images"


@pytest.mark.parametrize(
    "breaker",
    [
        _missing_file,
        _box_outside,
        _zero_box,
        _unknown_category,
        _duplicate_ids,
        _empty_json,
        _no_images,
    ],
)
def test_bad_datasets_exit_2_and_leave_results_untouched(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, breaker
) -> None:
    root = _copy(data, tmp_path)
    results = root / "results" / "train"
    results.mkdir(parents=True)
    previous = results / "model_epoch_000.pth"
    torch.save({"state_dict": {"model.model.w": torch.ones(2)}, "epoch": 0}, previous)
    (results / "status.json").write_text('{"status": "SUCCESS"}\n')
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    expected = breaker(root)
    assert main(["train", f"-e={MODEL_CARD_SPEC}", *_data_args(root)]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
    assert torch.load(previous, weights_only=True)["epoch"] == 0


def _h5_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "h5"
    synth_dataset(root, num_images=8, width=64, height=64, format="h5", cameras=2)
    return root


def test_h5_missing_file_and_key_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _h5_dataset(tmp_path)
    (root / "Camera_02.h5").unlink()
    with h5py.File(root / "Camera_01.h5", "a") as f:
        del f["rgb"]["rgb_00000.jpg"]
    args = _data_args(root, image_dir=root)
    args[2] = f"dataset.val_data_sources.image_dir={root}"
    assert main(["train", f"-e={MODEL_CARD_SPEC}", *args]) == 2
    err = capsys.readouterr().err
    assert "Camera_02.h5: H5 file not found" in err
    assert "Camera_01.h5: key 'rgb_00000.jpg' not found in its 'rgb' group" in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "NODE_RANK is not set"),
        (
            {"WORLD_SIZE": "2", "NODE_RANK": "5", "MASTER_ADDR": "127.0.0.1"},
            "NODE_RANK=5 is out of range",
        ),
        (
            {"WORLD_SIZE": "3", "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1"},
            "WORLD_SIZE=3 (nodes) but train.num_nodes=2",
        ),
        (
            {
                "WORLD_SIZE": "2",
                "NODE_RANK": "1",
                "MASTER_ADDR": "no-such-host.invalid",
                "RTDETR_RENDEZVOUS_TIMEOUT": "2",
            },
            "MASTER_ADDR 'no-such-host.invalid' does not resolve",
        ),
    ],
)
def test_misconfigured_multi_node_launch(
    data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    env: dict,
    message: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = [*_data_args(data), "train.num_nodes=2", f"results_dir={data / 'mn-results'}"]
    assert main(["train", f"-e={MODEL_CARD_SPEC}", *args]) == 2
    assert message in capsys.readouterr().err


def test_unreachable_master_exits_1_naming_it(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    port = free_port()  # nothing listens here
    for k, v in {
        "WORLD_SIZE": "2",
        "NODE_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RTDETR_RENDEZVOUS_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(k, v)
    args = [*_data_args(data), "train.num_nodes=2", f"results_dir={data / 'mn-results'}"]
    assert main(["train", f"-e={MODEL_CARD_SPEC}", *args]) == 1
    assert f"could not reach MASTER_ADDR:MASTER_PORT 127.0.0.1:{port} within 2 s" in (
        capsys.readouterr().err
    )


def test_real_executable_exit_code_and_termination_message(tmp_path: Path) -> None:
    term = tmp_path / "termination-log"
    proc = subprocess.run(
        [sys.executable, "-m", "rtdetr_trainer.cli", "evaluate", f"-e={MODEL_CARD_SPEC}"],
        capture_output=True,
        text=True,
        env={"RTDETR_TERMINATION_LOG": str(term), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 2
    assert "evaluate.checkpoint: required by `evaluate`" in proc.stderr
    summary = json.loads(term.read_text())
    assert summary["task"] == "evaluate" and summary["status"] == "FAILURE"
    assert len(term.read_bytes()) <= 4096


def test_validate_decodes_every_image(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _copy(data, tmp_path)
    victim = root / "images" / "val" / "val_00006.jpg"
    victim.write_bytes(victim.read_bytes()[:150])  # header intact, pixels cut off
    assert main(["dataset", "validate", f"-e={MODEL_CARD_SPEC}", *_data_args(root)]) == 2
    assert f"val: {victim}: corrupt or unreadable image" in capsys.readouterr().err
