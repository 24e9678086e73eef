"""``rtdetr`` end to end through the real executable: the model card's spec, H5 input, two nodes,
crash-and-resume, a TAO checkpoint, and a corrupt image found by a worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rtdetr_spec import ModelConfig
from rtdetr_trainer.engine.checkpoint import LATEST_NAME, read_training_checkpoint
from tests.support import free_port
from tests.trainer.trainer_fixtures import (
    SEVEN,
    overrides_from,
    synth_dataset,
    tiny_spec_dict,
)

pytestmark = pytest.mark.slow

MODEL_CARD_SPEC = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
)
#: The model card's R50 spec made CPU-sized: only sizes, batch, epochs, processes and precision
#: change.
CPU_SIZED = [
    "dataset.augmentation.eval_spatial_size=[128,128]",
    "dataset.augmentation.train_spatial_size=[128,128]",
    "dataset.augmentation.multi_scales=[[128,128]]",
    "evaluate.input_width=128",
    "evaluate.input_height=128",
    "dataset.batch_size=2",
    "dataset.workers=0",
    "train.num_epochs=1",
    "train.num_gpus=1",
    "train.precision=fp32",
    "train.activation_checkpoint=false",
    "dataset.train_data_sources.sample_size=2",
]


def rtdetr(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rtdetr_trainer.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def _sources(image_dir: Path, ann: Path, *splits: str) -> list[str]:
    key = {"train": "train_data_sources", "val": "val_data_sources", "test": "test_data_sources"}
    out = []
    for s in splits:
        out += [
            f"dataset.{key[s]}.image_dir={image_dir}",
            f"dataset.{key[s]}.json_file={ann / f'{s}.json'}",
        ]
    return out


def _assert_table_with_seven(text: str) -> None:
    for name in SEVEN:
        assert any(line.startswith(name + " ") for line in text.splitlines()), (name, text)


@pytest.mark.parametrize("fmt", ["coco", "h5-bytes", "h5-arrays"])
def test_seed_r50_spec_trains_and_evaluates(tmp_path: Path, fmt: str) -> None:
    kind, _, flavour = fmt.partition("-")
    synth_dataset(
        tmp_path / "data",
        num_images=8,
        width=128,
        height=128,
        format=kind,
        h5_arrays=flavour == "arrays",
    )
    image_dir = tmp_path / "data" / "images" if kind == "coco" else tmp_path / "data"
    ann = tmp_path / "data" / "annotations"
    results = tmp_path / "results"
    train = rtdetr(
        "train",
        f"-e={MODEL_CARD_SPEC}",
        *_sources(image_dir, ann, "train", "val"),
        f"results_dir={results}",
        *CPU_SIZED,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "mapping them (sorted by id) to contiguous indices 0..6" in train.stderr
    _assert_table_with_seven(train.stdout)  # the validation KPI table
    ckpt = results / "train" / "model_epoch_000.pth"
    assert (results / "train" / LATEST_NAME).resolve() == ckpt
    assert (results / "train" / "experiment.yaml").exists()
    if kind != "coco":
        return
    ev = rtdetr(
        "evaluate",
        f"-e={MODEL_CARD_SPEC}",
        f"evaluate.checkpoint={ckpt}",
        *_sources(image_dir, ann, "test"),
        f"results_dir={results}",
        *CPU_SIZED,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    _assert_table_with_seven(ev.stdout)
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    assert set(metrics["per_class_AP50"]) == set(SEVEN)
    assert {"mAP", "mAP50", "stats"} <= set(metrics) and len(metrics["stats"]) == 12


def test_tao_layout_checkpoint_loads_strictly_and_evaluates(tmp_path: Path) -> None:
    from rtdetr_trainer.model.build import build_model

    synth_dataset(tmp_path / "data", num_images=8, width=128, height=128)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet_50"), 7, (128, 128))
    tao = {  # what TAO writes: Lightning keys + tao_model, no class map of ours
        "state_dict": {f"model.model.{k}": v for k, v in model.state_dict().items()},
        "tao_model": "rtdetr",
        "epoch": 29,
        "global_step": 1000,
        "pytorch-lightning_version": "2.1.2",
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    path = tmp_path / "tao_model.pth"
    torch.save(tao, path)
    ev = rtdetr(
        "evaluate",
        f"-e={MODEL_CARD_SPEC}",
        f"evaluate.checkpoint={path}",
        *_sources(tmp_path / "data" / "images", tmp_path / "data" / "annotations", "test"),
        f"results_dir={tmp_path / 'results'}",
        *CPU_SIZED,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "strictly" in ev.stderr and "has no class map" in ev.stderr
    _assert_table_with_seven(ev.stdout)


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synth_dataset(tmp_path_factory.mktemp("tiny"), num_images=12, width=64, height=64)


def test_two_nodes_train_together(tmp_path: Path, tiny_paths: dict[str, Path]) -> None:
    spec = tiny_spec_dict(tmp_path, tiny_paths, num_nodes=2)
    spec["dataset"].pop("test_data_sources")
    args = ["train", f"-e={MODEL_CARD_SPEC}", *overrides_from(spec), "train.num_gpus=1"]
    port = str(free_port())
    base = {
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
        "NUM_GPU_PER_NODE": "1",
        "RTDETR_RENDEZVOUS_TIMEOUT": "120",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rtdetr_trainer.cli", *args],
            env={**os.environ, **base, "NODE_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (1, 0)  # the worker node may start first, as pods do
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    for rank, (_, err) in zip((1, 0), outs, strict=True):
        assert f"joined: rank {rank} of world size 2" in err
    ckpt = read_training_checkpoint(tmp_path / "results" / "train" / LATEST_NAME)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 2  # 7 images / 2 ranks / batch 2


def test_killed_run_resumes_and_skips_partial_checkpoints(
    tmp_path: Path, tiny_paths: dict[str, Path]
) -> None:
    spec = tiny_spec_dict(tmp_path, tiny_paths, num_epochs=3)
    args = ["train", f"-e={MODEL_CARD_SPEC}", *overrides_from(spec), "train.num_gpus=1"]
    out = tmp_path / "results" / "train"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtdetr_trainer.cli", *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 400
        while not (out / "model_epoch_000.pth").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the pod dies: launcher and workers at once
        proc.wait()
    done = read_training_checkpoint(out / "model_epoch_000.pth")
    # What a crash mid-write could leave: a truncated newer file, a writer's temp file.
    good = (out / "model_epoch_000.pth").read_bytes()
    (out / "model_epoch_001.pth").write_bytes(good[: len(good) // 3])
    (out / ".model_epoch_001.pth.x.tmp").write_bytes(good[:100])
    again = rtdetr(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping unusable checkpoint" in again.stderr
    assert "model_epoch_000.pth: epoch 0 done, global step" in again.stderr
    final = read_training_checkpoint(out / LATEST_NAME)
    assert final["epoch"] == 2 and final["global_step"] == 3 * done["global_step"]
    assert not list(out.glob(".*.tmp"))
    status = [json.loads(line) for line in (out / "status.json").read_text().splitlines()]
    assert status[-1]["status"] == "SUCCESS"


def test_corrupt_image_found_by_a_worker_is_named(
    tmp_path: Path, tiny_paths: dict[str, Path]
) -> None:
    root = tmp_path / "data"
    import shutil

    shutil.copytree(tiny_paths["train"].parent.parent, root)
    paths = {k: root / "annotations" / f"{k}.json" for k in ("train", "val", "test")}
    victim = root / "images" / "train" / "train_00002.jpg"
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG: header fine, pixels not
    spec = tiny_spec_dict(tmp_path, paths)
    proc = rtdetr("train", f"-e={MODEL_CARD_SPEC}", *overrides_from(spec), "train.num_gpus=1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{victim}: corrupt or unreadable image" in proc.stderr
