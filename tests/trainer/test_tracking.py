"""Experiment tracking and the best checkpoint: TensorBoard tags readable by TensorBoard itself,
W&B offline runs that hold the logged metrics, one warning without a key, model_best.pth kept
when a later epoch is worse."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rtdetr_spec import load_experiment
from rtdetr_trainer.engine import checkpoint as ckpt_io
from rtdetr_trainer.engine.best import BEST_NAME, BestModel
from rtdetr_trainer.engine.tracking import Tracker, epoch_scalars, loss_scalars

LOSSES = {
    "loss_vfl": 1.0,
    "loss_bbox": 0.5,
    "loss_giou": 0.25,
    "loss_vfl_aux_0": 2.0,
    "loss_vfl_enc_0": 3.0,
    "loss_bbox_aux_0": 0.125,
    "loss_vfl_dn_0": 4.0,
    "loss_vfl_dn_1": 5.0,
}
RECORD = {
    "epoch": 0,
    "train_loss": 7.5,
    "val_loss": 6.0,
    "val_mAP": 0.25,
    "val_mAP50": 0.5,
    "val_per_class_AP50": {"person": 0.75, "pallet": None},
}


def _spec(tmp_path: Path, **wandb: object):
    return load_experiment(data={"results_dir": str(tmp_path), "wandb": {"enable": False, **wandb}})


def test_loss_terms_are_grouped_by_layer_kind() -> None:
    tags = loss_scalars(LOSSES)
    assert tags["loss/total"] == pytest.approx(sum(LOSSES.values()))
    assert tags["loss/vfl"] == 1.0 and tags["loss/bbox"] == 0.5 and tags["loss/giou"] == 0.25
    assert tags["loss_aux/vfl"] == 5.0 and tags["loss_aux/bbox"] == 0.125
    assert tags["loss_dn/vfl"] == 9.0
    assert epoch_scalars(RECORD) == {
        "epoch/train_loss": 7.5,
        "val/loss": 6.0,
        "val/mAP": 0.25,
        "val/mAP50": 0.5,
        "val_AP50/person": 0.75,  # no ground truth, no point
    }


def test_tensorboard_files_hold_losses_lr_metrics_and_images(tmp_path: Path) -> None:
    tracker = Tracker(_spec(tmp_path), tmp_path / "train", enabled=True)
    tracker.step(10, LOSSES, 1e-4)
    tracker.step(20, {k: v / 2 for k, v in LOSSES.items()}, 5e-5)
    tracker.epoch(0, 20, RECORD)
    tracker.images(20, [np.zeros((16, 36, 3), dtype=np.uint8)])
    tracker.close()
    acc = EventAccumulator(str(tmp_path / "train" / "tensorboard"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/total", "loss/vfl", "loss_aux/vfl", "loss_dn/vfl", "lr"} <= scalars
    assert {"val/mAP", "val/mAP50", "val_AP50/person", "epoch/train_loss"} <= scalars
    assert [(e.step, e.value) for e in acc.Scalars("loss/vfl")] == [(10, 1.0), (20, 0.5)]
    assert acc.Scalars("lr")[1].value == pytest.approx(5e-5)
    assert acc.Tags()["images"] == ["val_images/0"]
    assert acc.Images("val_images/0")[0].width == 36


def test_rank_other_than_zero_writes_nothing(tmp_path: Path) -> None:
    tracker = Tracker(_spec(tmp_path, enable=True), tmp_path / "train", enabled=False)
    tracker.step(10, LOSSES, 1e-4)
    tracker.epoch(0, 10, RECORD)
    tracker.close()
    assert not (tmp_path / "train").exists()


def test_wandb_without_a_key_says_so_once_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with caplog.at_level(logging.INFO, logger="rtdetr_trainer"):
        tracker = Tracker(_spec(tmp_path, enable=True), tmp_path / "train", enabled=True)
        tracker.step(10, LOSSES, 1e-4)
        tracker.epoch(0, 10, RECORD)
        tracker.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "WANDB_API_KEY" in warnings[0].getMessage()
    assert "wandb.enable=false" in warnings[0].getMessage()
    assert not (tmp_path / "train" / "wandb").exists()
    assert (tmp_path / "train" / "tensorboard").is_dir()  # TensorBoard does not depend on it


def test_mlflow_asked_for_is_one_warning_naming_where_the_metrics_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    with caplog.at_level(logging.INFO, logger="rtdetr_trainer"):
        tracker = Tracker(_spec(tmp_path, enable=False), tmp_path / "train", enabled=True)
        tracker.epoch(0, 10, RECORD)
        tracker.close()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "does not log to MLflow" in warning
    assert str(tmp_path / "train" / "metrics.jsonl") in warning
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    caplog.clear()
    Tracker(_spec(tmp_path, enable=False), tmp_path / "other", enabled=True).close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.slow
def test_wandb_offline_run_holds_the_logged_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = _spec(tmp_path, enable=True, project="rtdetr-test", name="offline", tags=["t"])
    tracker = Tracker(spec, tmp_path / "train", enabled=True)
    assert tracker.wandb is not None
    tracker.step(10, LOSSES, 1e-4)
    tracker.epoch(0, 20, RECORD)
    tracker.close()
    runs = list((tmp_path / "train" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (record_file,) = runs[0].glob("run-*.wandb")  # what `wandb sync` would upload
    history = [h for kind, h in _wandb_records(record_file) if kind == "history"]
    assert [h["_step"] for h in history] == [10, 20]
    assert history[0]["loss/vfl"] == 1.0 and history[0]["lr"] == pytest.approx(1e-4)
    assert history[1]["val/mAP50"] == 0.5 and history[1]["val_AP50/person"] == 0.75
    run = next(r for kind, r in _wandb_records(record_file) if kind == "run")
    assert run["project"] == "rtdetr-test" and run["display_name"] == "offline"
    assert "results_dir" in run["config"]  # the resolved spec


def _wandb_records(path: Path):
    """(kind, content) of each record in a W&B run file (a LevelDB-style log of protobufs)."""
    import struct

    from google.protobuf.json_format import MessageToDict
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, size, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (size == 0 and kind == 0):  # block trailer padding
            pos += left
            continue
        chunk, pos = chunk + data[pos + 7 : pos + 7 + size], pos + 7 + size
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            what = record.WhichOneof("record_type")
            if what == "history":
                yield (
                    what,
                    {
                        i.key or "/".join(i.nested_key): json.loads(i.value_json)
                        for i in record.history.item
                    },
                )
            elif what == "run":
                run = MessageToDict(record.run, preserving_proto_field_name=True)
                keys = {i.get("key") for i in run.get("config", {}).get("update", [])}
                yield what, {**run, "config": keys}


def _ckpt(epoch: int) -> dict:
    return {"state_dict": {"w": torch.full((2,), float(epoch))}, "epoch": epoch}


def test_best_model_stays_when_a_later_epoch_is_worse(tmp_path: Path) -> None:
    best = BestModel(tmp_path, [])
    assert best.existing() is None
    history = []
    for epoch, score in enumerate([0.2, 0.5, 0.3, 0.5]):
        record = {"epoch": epoch, "val_mAP50": score, "val_mAP": 0.9 - score}
        history.append(record)
        best.offer(epoch, record, lambda e=epoch: _ckpt(e))
    saved = torch.load(tmp_path / BEST_NAME, weights_only=True)
    assert saved["epoch"] == 1 and best.epoch == 1  # later worse (0.3) and equal (0.5) epochs lose
    assert best.existing() == tmp_path / BEST_NAME
    resumed = BestModel(tmp_path, history)  # the score so far comes from the history
    assert resumed.score == 0.5 and not resumed.offer(4, {"epoch": 4, "val_mAP50": 0.4}, dict)
    assert resumed.offer(5, {"epoch": 5, "val_mAP50": 0.6}, lambda: _ckpt(5))
    assert torch.load(tmp_path / BEST_NAME, weights_only=True)["epoch"] == 5
    assert not list(tmp_path.glob(".*.tmp"))


def test_retention_never_deletes_the_best_model(tmp_path: Path) -> None:
    for epoch in range(4):
        ckpt_io.atomic_torch_save(_ckpt(epoch), tmp_path / f"model_epoch_{epoch:03d}.pth")
    BestModel(tmp_path, []).offer(0, {"epoch": 0, "val_mAP50": 0.9}, lambda: _ckpt(0))
    history = [{"epoch": e, "val_mAP": 0.1 * e} for e in range(4)]
    removed = ckpt_io.retain(tmp_path, 1, history, None, None)
    assert {p.name for p in removed} == {"model_epoch_000.pth", "model_epoch_001.pth",
                                         "model_epoch_002.pth"}  # fmt: skip
    assert (tmp_path / BEST_NAME).is_file()
    assert ckpt_io.find_resume_checkpoint(tmp_path)[0].name == "model_epoch_003.pth"


@pytest.mark.slow
def test_a_training_run_leaves_tensorboard_files_and_the_best_model(tmp_path: Path) -> None:
    from rtdetr_trainer.data.pipeline import prepare_train_data
    from rtdetr_trainer.engine.distributed import DistContext
    from rtdetr_trainer.engine.loop import Trainer
    from rtdetr_trainer.engine.reporting import read_summary
    from rtdetr_trainer.model.build import build_criterion, build_model
    from rtdetr_trainer.results import TaskResults
    from tests.trainer.trainer_fixtures import synth_dataset, tiny_spec_dict

    paths = synth_dataset(tmp_path / "synth", num_images=10, width=64, height=64)
    spec = load_experiment(data=tiny_spec_dict(tmp_path, paths, num_epochs=2))
    torch.manual_seed(0)
    results = TaskResults(spec, "train")
    results.prepare()
    trainer = Trainer(spec, DistContext(), prepare_train_data(spec),
                      build_model(spec.model, 7, (64, 64)), build_criterion(spec.model, 7),
                      results)  # fmt: skip
    summary = trainer.fit()
    out = tmp_path / "results" / "train"
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert {"loss/total", "loss/vfl", "loss_aux/giou", "loss_dn/bbox", "lr", "val/mAP50"} <= set(
        acc.Tags()["scalars"]
    )
    assert [e.step for e in acc.Scalars("val/mAP50")] == [3, 6]  # 3 steps per epoch
    assert "val_images/0" in acc.Tags()["images"]
    best = torch.load(out / BEST_NAME, weights_only=False)
    scores = [h["val_mAP50"] for h in trainer.state.history]
    assert best["epoch"] == int(np.argmax(scores))  # the first of equals
    assert summary.artifacts["best_model"] == str(out / BEST_NAME)
    assert read_summary(out).artifacts["best_model"] == str(out / BEST_NAME)


def test_validation_pictures_put_truth_left_and_predictions_right() -> None:
    from rtdetr_trainer.engine.tracking import validation_pictures

    grey = np.full((3, 40, 60), 0.5, dtype=np.float32)
    truth_box = np.array([[0.25, 0.5, 0.3, 0.5]], dtype=np.float32)  # cx cy w h: x 6..24 px
    det = {"scores": np.array([0.9, 0.1]), "labels": np.array([1, 0]),
           "boxes": np.array([[40.0, 5.0, 55.0, 30.0], [0.0, 0.0, 59.0, 39.0]])}  # fmt: skip
    (pic,) = validation_pictures([(grey, np.array([0]), truth_box, det)], ["person", "pallet"])
    assert pic.shape == (40, 60 + 4 + 60, 3) and pic.dtype == np.uint8
    left, right = pic[:, :60], pic[:, 64:]
    assert (left[20, 6] != 127).any() and (left[20, 47] == 127).all()  # truth edge, no pred
    assert (right[20, 40] != 127).any() and (right[20, 6] == 127).all()  # pred edge, no truth
    assert (right[0, 30] == 127).all()  # the 0.1 detection is below the drawing threshold
