"""The training loop in-process with the tiny model: checkpoint layout, exact resume, EMA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rtdetr_spec import load_experiment
from rtdetr_spec.progress import parse_log
from rtdetr_trainer.data.pipeline import prepare_train_data
from rtdetr_trainer.engine.checkpoint import LATEST_NAME, read_training_checkpoint
from rtdetr_trainer.engine.distributed import DistContext
from rtdetr_trainer.engine.loop import Trainer
from rtdetr_trainer.model.build import build_criterion, build_model
from rtdetr_trainer.model.weights import load_strict
from rtdetr_trainer.results import TaskResults, last_status
from tests.trainer.trainer_fixtures import synth_dataset, tiny_spec_dict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synth_dataset(
        tmp_path_factory.mktemp("synth"), num_images=10, width=64, height=64
    )  # 7 train images


def _trainer(root: Path, paths: dict[str, Path], **train: object) -> Trainer:
    spec = load_experiment(data=tiny_spec_dict(root, paths, **train))
    torch.manual_seed(0)
    model = build_model(spec.model, 7, (64, 64))
    results = TaskResults(spec, "train")
    results.prepare()
    return Trainer(
        spec,
        DistContext(),
        prepare_train_data(spec),
        model,
        build_criterion(spec.model, 7),
        results,
    )


def test_checkpoint_layout_is_taos_plus_ours(
    tmp_path: Path, paths: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = _trainer(tmp_path, paths, enable_ema=True).fit()
    # Rank 0's progress lines on stdout, as the operator reads them from the pod log.
    reports = parse_log(capsys.readouterr().out)
    assert reports[0].epoch == 0 and reports[0].step == 1 and reports[0].loss is not None
    end = reports[-1]
    assert (end.epoch, end.num_epochs, end.percent, end.global_step) == (1, 1, 100.0, 3)
    assert end.eta_seconds == 0.0 and end.validation is not None
    assert end.validation.m_ap50 == pytest.approx(summary.metrics["val_mAP50"], abs=1e-6)
    ckpt = read_training_checkpoint(tmp_path / "results" / "train" / LATEST_NAME)
    for key in (
        "state_dict",
        "tao_model",
        "epoch",
        "global_step",
        "pytorch-lightning_version",
        "optimizer_states",
        "lr_schedulers",
        "class_map",
        "spec",
        "ema_state_dict",
        "sampler",
        "rng_state",
    ):
        assert key in ckpt, key
    assert ckpt["tao_model"] == "rtdetr" and ckpt["epoch"] == 0 and ckpt["global_step"] == 3
    assert all(k.startswith("model.model.") for k in ckpt["state_dict"])
    assert all(k.startswith("model.model.") for k in ckpt["ema_state_dict"])
    assert ckpt["class_map"]["classes"][0] == {"index": 0, "category_id": 1, "name": "person"}
    fresh = build_model(load_experiment(data=ckpt["spec"]).model, 7, (64, 64))
    load_strict(fresh, ckpt)  # TAO's key layout loads strictly into a new model
    assert summary.status == "SUCCESS" and "val_mAP50" in summary.metrics
    status = last_status(tmp_path / "results" / "train" / "status.json")
    assert status["status"] == "SUCCESS" and "val_mAP50" in status["kpi"]


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path, paths: dict[str, Path]) -> None:
    straight = _trainer(tmp_path / "a", paths, num_epochs=2)
    straight.fit()
    first = _trainer(tmp_path / "b", paths, num_epochs=1)
    first.fit()
    resumed = _trainer(tmp_path / "b", paths, num_epochs=2)  # same results dir: auto-resume
    resumed.resume_or_initialise()
    assert (resumed.state.epoch, resumed.state.global_step) == (1, 3)
    adam = resumed.optimizer.state_dict()["state"]
    assert adam and all(int(s["step"]) == 3 for s in adam.values())  # optimizer state restored
    resumed.fit()
    a = straight.raw_model.state_dict()
    b = resumed.raw_model.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    ckpt = read_training_checkpoint(tmp_path / "b" / "results" / "train" / LATEST_NAME)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 6 and len(ckpt["history"]) == 2


def test_resume_from_env_continues_another_run_until_this_one_has_its_own(
    tmp_path: Path, paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _trainer(tmp_path / "a", paths, num_epochs=1)
    first.fit()
    monkeypatch.setenv(
        "RTDETR_RESUME_FROM", str(tmp_path / "a" / "results" / "train" / LATEST_NAME)
    )
    other = _trainer(tmp_path / "b", paths, num_epochs=2)  # empty folder: the other run's file
    other.resume_or_initialise()
    assert (other.state.epoch, other.state.global_step) == (1, 3)
    other.fit()
    again = _trainer(tmp_path / "b", paths, num_epochs=3)  # own checkpoint now wins
    again.resume_or_initialise()
    assert (again.state.epoch, again.state.global_step) == (2, 6)


def test_explicit_resume_path_that_is_not_a_checkpoint(
    tmp_path: Path, paths: dict[str, Path]
) -> None:
    from rtdetr_trainer.errors import CheckpointError

    bad = tmp_path / "half.pth"
    bad.write_bytes(b"PK\x03\x04 truncated")
    trainer = _trainer(tmp_path, paths, resume_training_checkpoint_path=str(bad))
    with pytest.raises(
        CheckpointError, match=r"train\.resume_training_checkpoint_path: .*half\.pth"
    ):
        trainer.resume_or_initialise()


def test_retention_keeps_the_newest_and_the_best_and_resume_finds_the_latest(
    tmp_path: Path, paths: dict[str, Path]
) -> None:
    """3 epochs, keep 1: the last epoch's file and the best one by val_loss stay."""
    from rtdetr_trainer.engine.checkpoint import best_epoch, find_resume_checkpoint

    trainer = _trainer(
        tmp_path, paths, num_epochs=3, keep_last_checkpoints=1,
        checkpointer={"monitor": "val_loss"},
    )  # fmt: skip
    summary = trainer.fit()
    folder = tmp_path / "results" / "train"
    best = best_epoch(trainer.state.history, "val_loss")
    assert best is not None
    kept = sorted(p.name for p in folder.glob("model_epoch_*.pth"))
    assert kept == sorted({f"model_epoch_{best:03d}.pth", "model_epoch_002.pth"})
    assert (folder / LATEST_NAME).resolve().name == "model_epoch_002.pth"
    found = find_resume_checkpoint(folder)
    assert found is not None and found[1]["epoch"] == 2
    assert summary.artifacts["best_checkpoint"] == str(folder / f"model_epoch_{best:03d}.pth")
