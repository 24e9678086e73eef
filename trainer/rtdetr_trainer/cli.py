"""``rtdetr``: TAO's ``tao model rtdetr <task> -e spec.yaml key=value ...``, plus dataset tools.

    rtdetr train|evaluate|inference|export -e SPEC.yaml [key=value ...]
    rtdetr dataset validate -e SPEC.yaml [--task train|evaluate] [key=value ...]
    rtdetr dataset synth --output DIR [--num-images N] [--format coco|h5] ...
    rtdetr dataset convert coco-to-h5|kitti-to-coco ...

``-e=spec.yaml`` (as the seed writes it) and ``-e spec.yaml`` are both accepted. Results go to
``<results_dir>/<task>/``. Exit codes: 0 success, 2 bad input (spec, data, checkpoint, launch
environment: fix and rerun), 1 runtime failure. User errors are one message on stderr, never a
traceback. This module imports torch only once a task that needs it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module

from rtdetr_spec import ExperimentSpec, SpecError, load_experiment
from rtdetr_spec.artifacts import TaskSummary
from rtdetr_trainer.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    ExportUnavailableError,
    TrainerError,
)
from rtdetr_trainer.results import write_termination_message

log = logging.getLogger("rtdetr_trainer")

TASKS = ("train", "evaluate", "inference", "export")


def _spec_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        "--experiment_spec_file",
        "--experiment-spec",
        dest="spec",
        required=True,
        metavar="SPEC.yaml",
        help="experiment spec (TAO format); -e=FILE also works",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="spec overrides, e.g. dataset.train_data_sources.image_dir=/data/train",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtdetr", description="RT-DETR fine-tuning with TAO-compatible specs"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for task in TASKS:
        _spec_arg(sub.add_parser(task, help=f"{task} (as `tao model rtdetr {task}`)"))
    ds = sub.add_parser("dataset", help="dataset tools").add_subparsers(dest="tool", required=True)
    val = ds.add_parser("validate", help="run every dataset check of a task without training")
    _spec_arg(val)
    val.add_argument("--task", choices=("train", "evaluate"), default="train")
    syn = ds.add_parser("synth", help="write a synthetic 7-class warehouse dataset")
    syn.add_argument("--output", required=True)
    syn.add_argument("--num-images", type=int, default=60)
    syn.add_argument("--format", choices=("coco", "h5"), default="coco")
    syn.add_argument("--image-size", default="256x256", help="WIDTHxHEIGHT (default 256x256)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--h5-arrays", action="store_true", help="H5 frames as BGR arrays")
    syn.add_argument("--cameras", type=int, default=3, help="H5 files to spread frames over")
    conv = ds.add_parser("convert", help="convert datasets").add_subparsers(
        dest="kind", required=True
    )
    c2h = conv.add_parser("coco-to-h5", help="COCO image folder -> per-camera H5 files")
    c2h.add_argument("--image-dir", required=True)
    c2h.add_argument("--json-file", required=True)
    c2h.add_argument("--output", required=True)
    c2h.add_argument("--arrays", action="store_true", help="store BGR arrays, not JPEG bytes")
    c2h.add_argument(
        "--camera",
        choices=("folder", "single"),
        default="folder",
        help="one H5 per image sub-folder (default) or one for all",
    )
    k2c = conv.add_parser("kitti-to-coco", help="KITTI labels -> COCO JSON (TAO dataset convert)")
    k2c.add_argument("--image-dir", required=True)
    k2c.add_argument("--label-dir", required=True)
    k2c.add_argument("--output", required=True)
    k2c.add_argument("--val-split", type=float, default=0.0, help="percent of images for val")
    k2c.add_argument("--num-shards", type=int, default=1)
    k2c.add_argument("--mapping", help='JSON file {"kitti class": "target class"}')
    k2c.add_argument("--seed", type=int, default=42)
    return p


def load_spec(path: str, overrides: Sequence[str], task: str) -> ExperimentSpec:
    path = path[1:] if path.startswith("=") else path  # `-e=spec.yaml`
    spec = load_experiment(path, list(overrides))
    spec.check_required(task)
    for key in spec.optional_missing(task):
        print(
            f"warning: {key} is ?? (not set); using the default: {spec.get(key)!r}", file=sys.stderr
        )
    return spec


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
    try:
        export = import_module("rtdetr_trainer.export")
    except ModuleNotFoundError as e:
        if e.name and "rtdetr_trainer.export".startswith(e.name):
            raise ExportUnavailableError(
                "export is not available in this build (rtdetr_trainer.export is missing)"
            ) from None
        raise
    result = export.run(spec)
    if isinstance(result, TaskSummary):
        return result
    return TaskSummary(task="export", status="SUCCESS", artifacts=dict(result or {}))


def _dataset_tool(args: argparse.Namespace) -> int:
    if args.tool == "validate":
        from rtdetr_trainer.data.validate import validate

        spec = load_spec(args.spec, args.overrides, args.task)
        print(validate(spec, args.task))
        return EXIT_OK
    if args.tool == "synth":
        from rtdetr_trainer.data.synth import SynthConfig, generate

        try:
            w, h = (int(v) for v in args.image_size.lower().split("x"))
        except ValueError:
            raise SpecError(f"--image-size {args.image_size!r}: expected WIDTHxHEIGHT") from None
        if args.num_images < 1 or w < 32 or h < 32:
            raise SpecError("--num-images must be >= 1 and --image-size at least 32x32")
        cfg = SynthConfig(
            num_images=args.num_images,
            width=w,
            height=h,
            seed=args.seed,
            format=args.format,
            h5_arrays=args.h5_arrays,
            cameras=args.cameras,
        )
        for split, path in generate(args.output, cfg).items():
            print(f"{split}: {path}")
        return EXIT_OK
    from rtdetr_trainer.data import convert

    if args.kind == "coco-to-h5":
        out = convert.coco_to_h5(
            args.image_dir, args.json_file, args.output, arrays=args.arrays, camera=args.camera
        )
        print(f"wrote {out}")
    else:
        for path in convert.kitti_to_coco(
            args.image_dir,
            args.label_dir,
            args.output,
            val_split=args.val_split,
            num_shards=args.num_shards,
            mapping=args.mapping,
            seed=args.seed,
        ):
            print(f"wrote {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    task = args.command if args.command in TASKS else None
    try:
        if task is None:
            return _dataset_tool(args)
        spec = load_spec(args.spec, args.overrides, task)
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
        traceback.print_exc()
        return _fail(task, f"{type(e).__name__}: {e}", EXIT_RUNTIME)


def _fail(task: str | None, message: str, code: int) -> int:
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
