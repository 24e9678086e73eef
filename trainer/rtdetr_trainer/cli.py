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
import sys
import traceback
from collections.abc import Sequence

from rtdetr_spec import ExperimentSpec, SpecError
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtdetr", description="RT-DETR fine-tuning with TAO-compatible specs"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for task in TASKS:
        add_spec_args(sub.add_parser(task, help=f"{task} (as `tao model rtdetr {task}`)"))
    add_dataset_parser(sub.add_parser("dataset", help="dataset tools"))
    return p


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
