"""``rtdetr``: TAO's ``tao model rtdetr <task> -e spec.yaml key=value ...``, plus dataset tools.

    rtdetr train|evaluate|inference|export -e SPEC.yaml [key=value ...]
    rtdetr dataset validate -e SPEC.yaml [--task train|evaluate] [key=value ...]
    rtdetr dataset synth --output DIR [--num-images N] [--format coco|h5] ...
    rtdetr dataset convert mtmc|kitti|coco2h5|h52coco ...   (see rtdetr_trainer.data.cli)

``-e=spec.yaml`` (as NVIDIA's model card writes it) and ``-e spec.yaml`` are both accepted. Results
go to
``<results_dir>/<task>/``. Exit codes: 0 success, 2 bad input (spec, data, checkpoint, launch
environment: fix and rerun), 3 storage (a result could not be written: fix the volume, then
rerun), 1 runtime failure. User errors are one message on stderr, never a
traceback. This module imports torch only once a task that needs it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from rtdetr_spec import ExperimentSpec, SpecError
from rtdetr_spec.cli_help import NO_PROGRESS_ENV, add_no_progress, add_version, finish_parser
from rtdetr_spec.redact import redact_text
from rtdetr_spec.reporting import TaskSummary, write_termination_message
from rtdetr_trainer.data.cli import add_dataset_parser, run_dataset_tool
from rtdetr_trainer.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    TrainerError,
    storage_failure,
)
from rtdetr_trainer.results import check_results_dir
from rtdetr_trainer.spec_args import add_spec_args, load_spec

log = logging.getLogger("rtdetr_trainer")

TASKS = ("train", "evaluate", "inference", "export")


#: Examples shown under each task's --help.
EXAMPLES = {
    "train": """examples:
  rtdetr train -e spec.yaml
  rtdetr train -e spec.yaml train.num_epochs=30 train.num_gpus=8 results_dir=/results
  rtdetr train -e spec.yaml train.resume_training_checkpoint_path=/results/train/model_epoch_009.pth

writes <results_dir>/train/: model_epoch_NNN.pth, rtdetr_model_latest.pth, model_best.pth (highest
validation mAP50), status.json, metrics.jsonl, summary.json, tensorboard/ (tensorboard --logdir)""",
    "evaluate": """examples:
  rtdetr evaluate -e spec.yaml evaluate.checkpoint=/results/train/model_best.pth
  rtdetr evaluate -e spec.yaml evaluate.checkpoint=model.onnx \\
      dataset.test_data_sources.json_file=/data/test.json

writes <results_dir>/evaluate/: metrics.json, detections.json, pr_curves.png, confusion_matrix.png,
annotated_images.png""",
    "inference": """examples:
  rtdetr inference -e spec.yaml inference.checkpoint=/results/train/model_best.pth \
      dataset.infer_data_sources.image_dir=[/data/frames] inference.conf_threshold=0.5

writes <results_dir>/inference/: images_annotated/, labels/ (KITTI), detections.json""",
    "export": """examples:
  rtdetr export -e spec.yaml export.checkpoint=/results/train/model_best.pth \\
      export.onnx_file=/results/export/rtdetr.onnx
  rtdetr export -e spec.yaml export.checkpoint=model.pth export.onnx_file=m.onnx \\
      export.input_height=544 export.input_width=960""",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtdetr",
        description="RT-DETR fine-tuning with TAO-compatible specs",
        epilog="exit codes: 0 success, 1 runtime failure, 2 bad input, 3 storage.\n"
        "`rtdetr <task> --help` shows each task's examples.",
    )
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True)
    for task in TASKS:
        t = sub.add_parser(
            task, help=f"{task} (as `tao model rtdetr {task}`)", epilog=EXAMPLES[task]
        )
        add_spec_args(t)
        add_no_progress(t)
    add_dataset_parser(sub.add_parser("dataset", help="dataset tools"))
    return finish_parser(p)


def run_task(task: str, spec: ExperimentSpec) -> TaskSummary:
    if task == "train":
        from rtdetr_trainer.engine.train_task import run_train

        return run_train(spec)
    if task == "evaluate":
        from rtdetr_trainer.evaluation.run import run_evaluate

        return run_evaluate(spec)[1]
    if task == "inference":
        from rtdetr_trainer.inference.run import run_inference

        return run_inference(spec)
    from rtdetr_trainer.export import run as run_export

    return run_export(spec)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    task = args.command if args.command in TASKS else None
    if getattr(args, "no_progress", False):
        os.environ[NO_PROGRESS_ENV] = "1"  # the training processes inherit it
    try:
        if task is None:
            return run_dataset_tool(args)
        spec = load_spec(args.spec, args.overrides, task)
        check_results_dir(spec, task)
        summary = run_task(task, spec)
        write_termination_message(summary)
        return EXIT_OK
    except SpecError as e:
        return _fail(task, str(e), EXIT_BAD_INPUT)
    except TrainerError as e:
        return _fail(task, str(e), e.exit_code)
    except KeyboardInterrupt:
        return _fail(task, "interrupted", 130)
    except Exception as e:
        storage = storage_failure(e)  # a full or read-only volume: exit 3, one line
        if storage is not None:
            return _fail(task, str(storage), storage.exit_code)
        traceback.print_exc()
        return _fail(task, f"{type(e).__name__}: {e}", EXIT_RUNTIME)


def _fail(task: str | None, message: str, code: int) -> int:
    message = redact_text(message)  # stderr and the termination message reach logs and status
    name = f"rtdetr {task}" if task else "rtdetr"
    print(f"{name}: error: {message}", file=sys.stderr, flush=True)
    if task is not None:
        write_termination_message(
            TaskSummary(
                task=task,
                status="FAILURE",  # type: ignore[arg-type]
                message=f"exit {code}: {message}"[:3000],
            )
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
