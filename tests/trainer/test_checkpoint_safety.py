"""Checkpoints never run code: a planted pickle payload is refused on every path that loads one.

The payload is real: the first test proves that a full unpickle of the same file writes the
marker, so the refusals below are not refusals of a file that was harmless anyway.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rtdetr_trainer.engine.checkpoint import read_training_checkpoint, save_checkpoint
from rtdetr_trainer.errors import CheckpointError
from rtdetr_trainer.model import build_model
from rtdetr_trainer.model.safe_load import TRUST_ENV, UnsafeCheckpointError
from rtdetr_trainer.model.weights import (
    load_pretrained,
    load_strict,
    read_checkpoint,
    to_tao_state_dict,
)
from tests.trainer._model_fixtures import small_config
from tests.trainer.trainer_fixtures import synth_dataset

ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD_SPEC = ROOT / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
SIZE = (64, 64)


class _Payload:
    """Unpickling this calls ``builtins.exec``, which writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _model():
    torch.manual_seed(0)
    return build_model(small_config(), 7, SIZE)


def _plant(path: Path, marker: Path) -> Path:
    """A TAO-looking checkpoint with real weights and the payload among its callbacks."""
    torch.save(
        {
            "state_dict": to_tao_state_dict(_model()),
            "tao_model": "rtdetr",
            "epoch": 0,
            "callbacks": {"ModelCheckpoint": _Payload(marker)},
        },
        path,
    )
    return path


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    return _plant(tmp_path / "evil.pth", marker), marker


def test_the_payload_is_real_when_fully_unpickled(evil) -> None:
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


def test_shared_loader_refuses_the_payload_naming_file_and_global(evil) -> None:
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "builtins.exec" in msg and TRUST_ENV in msg
    assert "\n" not in msg
    assert not marker.exists()


def test_pretrained_resume_and_strict_paths_refuse_the_payload(evil) -> None:
    path, marker = evil
    with pytest.raises(ValueError, match=r"builtins\.exec"):
        load_pretrained(_model(), path)
    with pytest.raises(ValueError, match=r"builtins\.exec"):
        load_strict(_model(), path)
    with pytest.raises(CheckpointError, match=r"evil\.pth.*builtins\.exec"):
        read_training_checkpoint(path)
    assert not marker.exists()


def test_only_the_explicit_opt_in_unpickles_fully(evil, monkeypatch) -> None:
    path, marker = evil
    monkeypatch.setenv(TRUST_ENV, "yes")  # anything but "1" keeps the safe load
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(path)
    assert not marker.exists()
    monkeypatch.setenv(TRUST_ENV, "1")
    assert "state_dict" in read_checkpoint(path)
    assert marker.read_text() == "ran"


@pytest.mark.slow  # the real executable: ~15 s each on a busy CPU
@pytest.mark.parametrize("task", ["evaluate", "export", "inference"])
def test_cli_tasks_exit_2_and_never_run_the_payload(tmp_path: Path, evil, task: str) -> None:
    path, marker = evil
    paths = synth_dataset(tmp_path / "data", num_images=2, width=64, height=64)
    images = tmp_path / "data" / "images"
    source = {
        "evaluate": [
            f"dataset.test_data_sources.image_dir={images}",
            f"dataset.test_data_sources.json_file={paths['test']}",
        ],
        "inference": [f"dataset.infer_data_sources.image_dir={images / 'test'}"],
        "export": ["export.onnx_file=m.onnx", "export.on_cpu=true"],
    }[task]
    env = {k: v for k, v in os.environ.items() if k != TRUST_ENV}
    proc = subprocess.run(
        [
            sys.executable, "-m", "rtdetr_trainer.cli", task, f"-e={MODEL_CARD_SPEC}",
            f"{task}.checkpoint={path}", f"results_dir={tmp_path / 'results'}", *source,
        ],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and str(path) in errors[0] and "builtins.exec" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def _tao_lightning_checkpoint(model) -> dict:
    """What a TAO/Lightning run writes besides the weights: loops, callbacks, optimizer and
    scheduler states, and hyper-parameters as an OmegaConf config (with lists, a path and
    omegaconf's defaultdict resolver cache), numpy metrics and a path."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10, 20])
    hparams = OmegaConf.create(
        {
            "experiment_spec": {
                "train": {"num_epochs": 72, "lr_steps": [10, 20], "ema": {"decay": 0.999}},
                "results_dir": "/results",
                "dataset": {"num_classes": 7, "augmentation": {"multi_scales": [[640, 640]]}},
            }
        }
    )
    return {
        "epoch": 71,
        "global_step": 3000,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": to_tao_state_dict(model),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 72}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None}": {
                "best_model_score": torch.tensor(0.5),
                "dirpath": "/results/train",
                "best_k_models": {},
                "last_model_path": pathlib.PurePosixPath("/results/train/model_epoch_071.pth"),
            }
        },
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": hparams,
        "hparams_type": type(hparams),
        "status": {"val_mAP": np.float64(0.42), "per_epoch": np.arange(3, dtype=np.float32)},
        "counts": collections.defaultdict(int, {"images": 3}),
        "results_path": Path("/results/train"),
        "tao_model": "rtdetr",
    }


def test_tao_lightning_checkpoint_with_omegaconf_and_numpy_loads(tmp_path: Path) -> None:
    src = _model()
    path = tmp_path / "tao.pth"
    torch.save(_tao_lightning_checkpoint(src), path)
    ckpt = read_checkpoint(path)
    assert ckpt["status"]["val_mAP"] == pytest.approx(0.42)
    assert ckpt["counts"] == {"images": 3}
    dst = build_model(small_config(), 7, SIZE)
    assert load_strict(dst, ckpt) == "tao"
    want, got = src.state_dict(), dst.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert read_training_checkpoint(path)["epoch"] == 71


def test_our_own_checkpoint_loads_through_every_reader(tmp_path: Path) -> None:
    model = _model()
    ckpt = {
        "state_dict": to_tao_state_dict(model),
        "tao_model": "rtdetr",
        "epoch": 2,
        "spec": json.loads(json.dumps({"train": {"num_epochs": 3}})),
        "rng_state": {"torch": torch.get_rng_state(), "python": [3, [1, 2], None]},
        "optimizer_states": [torch.optim.AdamW(model.parameters()).state_dict()],
    }
    path = save_checkpoint(ckpt, tmp_path)
    assert read_checkpoint(path)["epoch"] == 2
    assert read_training_checkpoint(path)["epoch"] == 2


def test_the_operator_refuses_the_same_variable_name() -> None:
    from rtdetr_operator.api.training import FORBIDDEN_ENV

    assert TRUST_ENV in FORBIDDEN_ENV
