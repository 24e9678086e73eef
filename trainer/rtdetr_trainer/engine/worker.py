"""Entry point of one training process: ``python -m rtdetr_trainer.engine.worker``.

torchrun starts ``train.num_gpus`` of these per node with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
set. The launcher hands each a private run folder holding the resolved spec and, for
``dataset_type: serialized``, the annotation index it built and checked (memory-mapped here, one
page-cache copy per node). Each worker records its outcome (exit code + message) in that folder,
so the launcher reports the real cause and exit code rather than torchrun's generic failure.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from rtdetr_spec import SpecError, load_experiment
from rtdetr_spec.artifacts import ClassMap, atomic_write_text
from rtdetr_trainer.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    TrainerError,
    storage_failure,
)

log = logging.getLogger("rtdetr_trainer")

DATA_FILE = "data.json"
SPEC_FILE = "experiment.yaml"
#: The launcher's pid; a worker whose parent is not (or no longer) this process exits.
LAUNCHER_PID_ENV = "RTDETR_LAUNCHER_PID"
PR_SET_PDEATHSIG = 1


def die_with_launcher() -> None:
    """Make the kernel kill this worker when the launcher dies, even by SIGKILL.

    torchrun starts workers in their own sessions, so killing the launcher's process group
    leaves them running: outside a container they would go on training and writing checkpoints
    next to a restarted run. (In a pod, the whole container goes at once anyway.)
    """
    expected = os.environ.get(LAUNCHER_PID_ENV)
    if sys.platform != "linux" or not expected:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if str(os.getppid()) != expected:  # the launcher died before prctl took effect
        os._exit(EXIT_RUNTIME)


def outcome_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / f"outcome-rank{rank}.json"


def _record(run_dir: str, rank: int, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        record = json.dumps({"exit_code": code, "message": message})
        atomic_write_text(outcome_path(run_dir, rank), record)


def _load_data(spec, run_dir: Path):  # type: ignore[no-untyped-def]
    from rtdetr_trainer.data.index import DetectionIndex
    from rtdetr_trainer.data.pipeline import TrainData, prepare_train_data

    meta_file = run_dir / DATA_FILE
    if spec.dataset.dataset_type == "serialized" and meta_file.exists():
        meta = json.loads(meta_file.read_text())
        return TrainData(
            class_map=ClassMap.model_validate(meta["class_map"]),
            train=DetectionIndex.load(run_dir / "index" / "train"),
            val=DetectionIndex.load(run_dir / "index" / "val"),
            val_categories={int(k): v for k, v in meta["val_categories"].items()},
            sample_sizes=meta["sample_sizes"],
        )
    return prepare_train_data(spec, check_files=False)  # "default": a per-process index


def run(spec_path: str, run_dir: str) -> None:
    from rtdetr_trainer.engine.distributed import init_distributed
    from rtdetr_trainer.engine.loop import Trainer
    from rtdetr_trainer.model.build import build_criterion, build_model
    from rtdetr_trainer.results import TaskResults

    spec = load_experiment(spec_path)
    ctx = init_distributed()
    try:
        log.info(  # every rank says so: the others are quietened only after this line
            "joined: rank %d of world size %d (local rank %d), device %s, backend %s",
            ctx.rank,
            ctx.world_size,
            ctx.local_rank,
            ctx.device,
            ctx.backend or "none",
        )
        if not ctx.is_main:  # one voice: the others report only warnings and errors
            logging.getLogger("rtdetr_trainer").setLevel(logging.WARNING)
        data = _load_data(spec, Path(run_dir))
        num_classes = spec.dataset.num_classes
        h, w = spec.dataset.augmentation.eval_spatial_size
        model_cfg = spec.model
        if spec.train.pretrained_model_path and model_cfg.pretrained_backbone_path:
            # TAO's train.py: a full pretrained model replaces the backbone-only weights, so the
            # backbone is not frozen (no FrozenBatchNorm) and its BN layers train.
            log.info("train.pretrained_model_path is set: model.pretrained_backbone_path unused")
            model_cfg = model_cfg.model_copy(update={"pretrained_backbone_path": None})
        model = build_model(
            model_cfg, num_classes, (h, w), activation_checkpoint=spec.train.activation_checkpoint
        )
        criterion = build_criterion(spec.model, num_classes)
        results = TaskResults(spec, "train", writer=ctx.is_main)
        Trainer(spec, ctx, data, model, criterion, results).fit()
    finally:
        ctx.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtdetr_trainer.engine.worker")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args(argv)
    die_with_launcher()
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO,
        format=f"[rank {rank}] %(levelname)s %(message)s"
        if "RANK" in os.environ
        else "%(message)s",
        stream=sys.stderr,
    )
    try:
        run(args.spec, args.run_dir)
    except TrainerError as e:
        log.error("%s", e)
        _record(args.run_dir, rank, e.exit_code, str(e))
        return e.exit_code
    except SpecError as e:
        log.error("%s", e)
        _record(args.run_dir, rank, EXIT_BAD_INPUT, str(e))
        return EXIT_BAD_INPUT
    except Exception as e:
        storage = storage_failure(e)  # a checkpoint on a full or read-only volume
        if storage is not None:
            log.error("%s", storage)
            _record(args.run_dir, rank, storage.exit_code, str(storage))
            return storage.exit_code
        traceback.print_exc()
        _record(args.run_dir, rank, EXIT_RUNTIME, f"{type(e).__name__}: {e}")
        return EXIT_RUNTIME
    _record(args.run_dir, rank, EXIT_OK, "")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
